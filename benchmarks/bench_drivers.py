"""Benchmarks of the drivers stage (not tests: run by hand, numbers go to docs/drivers.md).

    python benchmarks/bench_drivers.py nlme   [--sizes 1500 3000] [--repeat 3]
    python benchmarks/bench_drivers.py table  [--n 10000]
    python benchmarks/bench_drivers.py approx [--n 10000] [--neighbors 30]

``nlme``: a full ML fit of the rational quadratic structure with nugget, rhcloud vs
``nlme::gls`` on the same data (lon/lat Euclidean distance, nlme's metric), side by side,
median of ``--repeat`` runs each. ``table``: the 11-fit AIC table on ``--n`` land cells of the
T127 grid (great-circle/chordal km), exact likelihood. ``approx``: the same table with the
Vecchia likelihood (``--neighbors``) against the exact one (``table`` must have written its
JSON first): AIC ranking, logLik, range, nugget and coefficient differences.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rhcloud.drivers.api import distance_matrices
from rhcloud.drivers.correlation import fill_correlation
from rhcloud.drivers.distances import lonlat_euclidean
from rhcloud.drivers.gls import aic_table, fit_gls
from rhcloud.drivers.vecchia import aic_table_vecchia

OUT = Path(tempfile.gettempdir()) / "rhcloud-bench-drivers"  # JSON results


def land_cells(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random land cells of a 128 x 256 (T127-like) grid, degrees."""
    from global_land_mask import globe

    lat = np.linspace(-89.3, 89.3, 128)
    lon = np.arange(256) * 360.0 / 256
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    land = globe.is_land(la, np.where(lo > 180, lo - 360, lo))
    la, lo = la[land], lo[land]
    idx = np.sort(np.random.default_rng(seed).choice(la.size, size=min(n, la.size), replace=False))
    return lo[idx], la[idx]


def simulate(lon, lat, d: np.ndarray, structure: str, range_: float, nugget: float,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = fill_correlation(structure, d, range_, nugget, full=True)
    from scipy.linalg import cholesky

    chol = cholesky(c, lower=True, overwrite_a=True, check_finite=False)
    x = rng.normal(size=lon.size)
    y = 1.0 + 0.5 * x + 1.3 * (chol @ rng.normal(size=lon.size))
    return np.column_stack([np.ones(lon.size), x]), y


R_FIT = r"""
suppressMessages(library(nlme))
d <- read.csv("case.csv")
for (i in seq_len({repeat})) {{
  t0 <- proc.time()[["elapsed"]]
  f <- gls(y ~ x, data = d, correlation = corRatio(form = ~lon + lat, nugget = TRUE), method = "ML")
  t1 <- proc.time()[["elapsed"]]
  cp <- coef(f$modelStruct$corStruct, unconstrained = FALSE)
  cat(sprintf("%.6f,%.12f,%.10g,%.10g,%.10g,%.10g\n", t1 - t0, as.numeric(logLik(f)), cp[1], cp[2],
              coef(f)[1], coef(f)[2]))
}}
"""


def bench_nlme(sizes: list[int], repeat: int) -> list[dict]:
    if shutil.which("Rscript") is None:
        sys.exit("Rscript not found")
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        lon, lat = rng.uniform(0, 60, n), rng.uniform(-20, 40, n)
        d = lonlat_euclidean(lon, lat)
        X, y = simulate(lon, lat, d, "rational", 6.0, 0.25, seed=n)
        with tempfile.TemporaryDirectory() as tmp:
            pd.DataFrame({"lon": lon, "lat": lat, "x": X[:, 1], "y": y}).to_csv(
                Path(tmp) / "case.csv", index=False)
            (Path(tmp) / "fit.R").write_text(R_FIT.format(repeat=repeat))
            out = subprocess.run(["Rscript", "--vanilla", "fit.R"], cwd=tmp, check=True,
                                 capture_output=True, text=True).stdout
        r = np.array([[float(v) for v in ln.split(",")] for ln in out.splitlines() if ln])
        ours = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fit = fit_gls(y, X, d, "rational", nugget=True)
            ours.append(time.perf_counter() - t0)
        row = {"n": n, "nlme_s": float(np.median(r[:, 0])), "rhcloud_s": float(np.median(ours)),
               "speedup": float(np.median(r[:, 0]) / np.median(ours)),
               "nlme_loglik": float(r[0, 1]), "rhcloud_loglik": fit.loglik,
               "nlme_range": float(r[0, 2]), "rhcloud_range": fit.range,
               "nlme_nugget": float(r[0, 3]), "rhcloud_nugget": fit.nugget_value,
               "rhcloud_evals": fit.n_evals}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _field(n: int):
    lon, lat = land_cells(n)
    dmap, dfor = distance_matrices(lon, lat, "great-circle")
    X, y = simulate(lon, lat, dmap["chordal"], "rational", 800.0, 0.3, seed=1)
    return lon, lat, dmap, dfor, X, y


def bench_table(n: int) -> dict:
    t0 = time.perf_counter()
    lon, lat, dmap, dfor, X, y = _field(n)
    t_setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    table, fits = aic_table(y, X, dmap, distance_for=dfor, coef_names=["(Intercept)", "x"])
    wall = time.perf_counter() - t1
    per_fit = [{"structure": f.structure, "nugget": f.nugget, "seconds": round(f.seconds, 2),
                "evals": f.n_evals, "evals32": f.extra.get("n_evals32", 0)} for f in fits]
    res = {"n": int(lon.size), "setup_s": t_setup, "table_s": wall, "fits": per_fit,
           "table": table.to_dict(orient="records"),
           "coefs": {f"{f.structure}{'+nug' if f.nugget else ''}": [*f.coef, *f.se] for f in fits}}
    print(table.to_string())
    print(json.dumps({k: res[k] for k in ("n", "setup_s", "table_s")}))
    print(pd.DataFrame(per_fit).to_string())
    return res


def bench_approx(n: int, neighbors: list[int], exact: dict) -> list[dict]:
    lon, lat, dmap, dfor, X, y = _field(n)
    del dmap
    ex = pd.DataFrame(exact["table"])
    key = ex.structure + ex.nugget.map({True: "+nug", False: ""})
    rows = []
    for m in neighbors:
        t0 = time.perf_counter()
        table, fits = aic_table_vecchia(y, X, lon, lat, dfor, neighbors=m,
                                        coef_names=["(Intercept)", "x"])
        wall = time.perf_counter() - t0
        merged = table.merge(ex, on=["structure", "nugget"], suffixes=("_vec", "_exact"))
        rank_vec = list(table.structure + table.nugget.map({True: "+nug", False: ""}))
        rank_ex = list(key)
        coef_err = {}
        for f in fits:
            k = f"{f.structure}{'+nug' if f.nugget else ''}"
            ce = exact["coefs"].get(k)
            if ce is not None and np.all(np.isfinite(f.coef)):
                coef_err[k] = [float((f.coef[j] - ce[j]) / ce[2 + j]) for j in range(2)]
        fin = np.isfinite(merged.loglik_exact) & np.isfinite(merged.loglik_vec)
        row = {"neighbors": m, "seconds": wall, "same_best": rank_vec[0] == rank_ex[0],
               "same_ranking": rank_vec == rank_ex, "ranking_vecchia": rank_vec,
               "ranking_exact": rank_ex,
               "max_abs_err_loglik": float(np.max(np.abs(merged.loglik_vec - merged.loglik_exact)[fin])),
               "coef_err_in_exact_se": coef_err,
               "evals": {f"{f.structure}{'+nug' if f.nugget else ''}": f.n_evals for f in fits}}
        print(json.dumps(row), flush=True)
        merged["dloglik"] = merged.loglik_vec - merged.loglik_exact
        merged["range_ratio"] = merged.range_vec / merged.range_exact
        merged["dnugget"] = merged.nugget_value_vec - merged.nugget_value_exact
        cols = ["structure", "nugget", "loglik_exact", "dloglik", "aic_vec", "aic_exact",
                "range_exact", "range_ratio", "nugget_value_exact", "dnugget"]
        print(merged[cols].to_string())
        row["table"] = merged[cols].to_dict(orient="records")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("part", choices=["nlme", "table", "approx"])
    p.add_argument("--sizes", type=int, nargs="+", default=[1500, 3000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--neighbors", type=int, nargs="+", default=[30])
    a = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    OUT.mkdir(exist_ok=True)
    if a.part == "nlme":
        res = bench_nlme(a.sizes, a.repeat)
    elif a.part == "table":
        res = bench_table(a.n)
    else:
        exact = json.loads((OUT / f"table_{a.n}.json").read_text())
        res = bench_approx(a.n, a.neighbors, exact)
    name = f"{a.part}_{a.n}.json" if a.part != "nlme" else "nlme.json"
    (OUT / name).write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
