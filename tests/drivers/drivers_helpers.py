"""Shared helpers for the drivers tests: synthetic cases with known truth, and Rscript."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rhcloud.drivers.correlation import fill_correlation
from rhcloud.drivers.distances import lonlat_euclidean

HAVE_R = shutil.which("Rscript") is not None


def simulate_gls_case(n: int = 300, seed: int = 1, structure: str = "rational",
                      range_: float = 6.0, nugget: float = 0.25) -> pd.DataFrame:
    """y = 1 + 0.5 x + 1.3 * spatial error (lon/lat degrees, nlme-style distance)."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(0, 40, n)
    lat = rng.uniform(-15, 15, n)
    c = fill_correlation(structure, lonlat_euclidean(lon, lat), range_, nugget, full=True)
    chol = np.linalg.cholesky(c)
    x = rng.normal(size=n)
    err = chol @ rng.normal(size=n)
    return pd.DataFrame({"lon": lon, "lat": lat, "x": x, "y": 1.0 + 0.5 * x + 1.3 * err})


def run_r(script: str, workdir: Path, timeout: float = 300) -> str:
    """Run an R script (text) with Rscript in ``workdir``; return its stdout."""
    path = workdir / "script.R"
    path.write_text(script)
    proc = subprocess.run(["Rscript", "--vanilla", str(path)], cwd=workdir, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"Rscript failed:\n{proc.stderr[-4000:]}")
    return proc.stdout

needs_r = pytest.mark.skipif(not HAVE_R, reason="Rscript not found")


def simulate_gamm_case(n: int = 300, seed: int = 2,
                       lith_effect: tuple[float, float, float] = (0.0, 0.8, -0.6)) -> pd.DataFrame:
    """y = 1.5 sin(1.5 x1) + lith + 0.8 * corRatio(range 5, nugget 0.3) error; x2 is noise."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(0, 40, n)
    lat = rng.uniform(-15, 15, n)
    c = fill_correlation("rational", lonlat_euclidean(lon, lat), 5.0, 0.3, full=True)
    chol = np.linalg.cholesky(c)
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 10, n)
    lith = rng.choice(["a", "b", "c"], n)
    eff = np.select([lith == "a", lith == "b"], [lith_effect[0], lith_effect[1]], lith_effect[2])
    y = 1.5 * np.sin(1.5 * x1) + eff + 0.8 * (chol @ rng.normal(size=n))
    return pd.DataFrame({"lon": lon, "lat": lat, "x1": x1, "x2": x2, "lith": lith, "y": y})


def planted_grid_world(seed: int = 5) -> tuple[pd.DataFrame, dict]:
    """A 24 x 16 lon/lat grid (1.5 deg) of cells with planted drivers and correlated error.

    residual = 30 sin(MAT / 4) + 0.0001 (MAP - 1000)^2 - 40 + lithology + error, where the
    error has a rational-quadratic correlation (range 500 km on chordal distance, nugget
    0.3, sd 20); SOC is pure noise for the residual.
    """
    from rhcloud.drivers.distances import chordal_km

    rng = np.random.default_rng(seed)
    lon, lat = np.meshgrid(np.arange(0, 36, 1.5), np.arange(35, 59, 1.5))
    lon, lat = lon.ravel(), lat.ravel()
    n = lon.size
    mat = rng.uniform(-5, 25, n)
    map_ = rng.uniform(200, 2000, n)
    soc = rng.gamma(3.0, 20.0, n)
    lith = rng.choice(["sed", "ig", "met"], n, p=[0.5, 0.3, 0.2])
    truth = {"MAT": lambda x: 30 * np.sin(x / 4), "MAP": lambda x: 0.0001 * (x - 1000) ** 2}
    c = fill_correlation("rational", chordal_km(lon, lat), 500.0, 0.3, full=True)
    err = 20 * (np.linalg.cholesky(c) @ rng.normal(size=n))
    lith_eff = np.select([lith == "ig", lith == "met"], [12.0, -8.0], 0.0)
    y = truth["MAT"](mat) + truth["MAP"](map_) - 40 + lith_eff + err
    df = pd.DataFrame({"lon": lon, "lat": lat, "MAT": mat, "MAP": map_, "SOC": soc,
                       "lithology": lith, "residual": y})
    return df, truth
