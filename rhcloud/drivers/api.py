"""Python API of the drivers stage: GLS model selection by AIC, then a GAMM.

>>> res = fit_drivers(ds, response="residual", smooth=["MAT", "MAP", "SOC", "NPPres"],
...                   factor=["lithology"], residual_label="median")
>>> res.write("out")          # out/tables/gls_aic.csv, gamm_terms.csv, gamm_effects.csv
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .correlation import SPHERE_VALID, STRUCTURES, canonical
from .distances import chordal_km, chordal_to_great_circle, lonlat_euclidean
from .fitcache import FitCache, digest
from .gamm import GAMMSelection, fit_gamm_select
from .gls import GLSFit, aic_table
from .vecchia import DEFAULT_NEIGHBORS, VecchiaLikelihood, aic_table_vecchia

LIKELIHOODS = ("auto", "exact", "vecchia")
VECCHIA_ABOVE = 15000
"""``likelihood="auto"`` uses the Vecchia approximation above this many cells (the exact
likelihood needs several n x n float64 matrices: 1.8 GB each at 15,000 cells, and O(n^3)
time per evaluation)."""

GLS_COLUMNS = ["structure", "nugget", "method", "loglik", "aic", "bic", "range", "nugget_value", "n"]
TERMS_COLUMNS = ["term", "edf", "stat", "p_value"]
EFFECTS_COLUMNS = ["residual", "term", "x", "effect", "se"]


@dataclass
class DriversResult:
    """GLS AIC table, the chosen structure and the GAMM (with the factor decision)."""

    response: str
    residual_label: str
    distance: str
    gls_table: pd.DataFrame
    gls_fits: list[GLSFit]
    best: GLSFit
    gamm: GAMMSelection | None
    data: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    likelihood: str = "exact"  # "exact" or "vecchia" (what was used)

    def gls_aic(self) -> pd.DataFrame:
        """``tables/gls_aic.csv`` rows (ranked by AIC; non-PD fits last with NaN AIC)."""
        return self.gls_table[GLS_COLUMNS].copy()

    def gamm_terms(self) -> pd.DataFrame:
        """``tables/gamm_terms.csv`` rows: edf, F statistic and p-value of each term."""
        if self.gamm is None:
            return pd.DataFrame(columns=TERMS_COLUMNS)
        return self.gamm.fit.terms[TERMS_COLUMNS].copy()

    def gamm_effects(self, n_grid: int = 100) -> pd.DataFrame:
        """``tables/gamm_effects.csv`` rows: partial effect and SE on a grid per smooth."""
        if self.gamm is None:
            return pd.DataFrame(columns=EFFECTS_COLUMNS)
        eff = self.gamm.fit.effects(n_grid)
        eff.insert(0, "residual", self.residual_label)
        return eff[EFFECTS_COLUMNS]

    def summary(self) -> dict:
        """JSON-able summary: chosen structure, GAMM fit, the factor decision, timings."""
        out = {"response": self.response, "residual": self.residual_label,
               "distance": self.distance, "n": int(self.best.n),
               "likelihood": self.likelihood,
               "gls_best": {"structure": self.best.structure, "nugget": self.best.nugget,
                            "range": self.best.range, "nugget_value": self.best.nugget_value,
                            "aic": self.best.aic},
               "timings_s": self.timings}
        if self.gamm is not None:
            g = self.gamm.fit
            out["gamm"] = {"structure": g.structure, "nugget": g.nugget, "range": g.range,
                           "nugget_value": g.nugget_value, "sigma": g.sigma,
                           "loglik": g.loglik, "aic": g.aic, "factor": g.factor,
                           "factor_decision": self.gamm.decision,
                           "factor_dropped": self.gamm.factor_dropped}
        return out

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write the three tables (and ``drivers_summary.json``) under ``directory/tables``."""
        return write_tables([self], directory)


def drivers_tables(results: list[DriversResult]) -> dict[str, pd.DataFrame]:
    """``gls_aic``, ``gamm_terms`` and ``gamm_effects`` over one or several results (e.g.
    the median and mean residuals): one schema whoever writes them (``rhcloud run`` and
    ``rhcloud drivers``): a ``residual`` column says which residual a row belongs to
    (trailing in ``gls_aic``/``gamm_terms``, leading in ``gamm_effects``)."""
    parts: dict[str, list[pd.DataFrame]] = {"gls_aic": [], "gamm_terms": [], "gamm_effects": []}
    for r in results:
        parts["gls_aic"].append(r.gls_aic().assign(residual=r.residual_label))
        parts["gamm_terms"].append(r.gamm_terms().assign(residual=r.residual_label))
        parts["gamm_effects"].append(r.gamm_effects())
    return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}


def write_tables(results: list[DriversResult], directory: str | Path) -> dict[str, Path]:
    """Write :func:`drivers_tables` and ``drivers_summary.json`` under ``directory/tables``."""
    tables = Path(directory) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in drivers_tables(results).items():
        path = tables / f"{name}.csv"
        frame.to_csv(path, index=False)
        paths[name] = path
    path = tables / "drivers_summary.json"
    path.write_text(json.dumps([r.summary() for r in results], indent=2, default=float))
    paths["summary"] = path
    return paths


def _to_frame(data, response: str, columns: list[str]) -> pd.DataFrame:
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover
        xr = None
    if xr is not None and isinstance(data, xr.Dataset):
        ds = data[[response, *[c for c in columns if c in data.data_vars]]]
        df = ds.to_dataframe().reset_index()
    elif isinstance(data, pd.DataFrame):
        df = data.copy()
    else:
        raise TypeError("data must be a pandas DataFrame or an xarray Dataset")
    missing = [c for c in ["lon", "lat", response, *columns] if c not in df.columns]
    if missing:
        raise KeyError(f"missing columns: {missing}")
    return df


def metric_for(distance: str) -> dict[str, str]:
    """The metric each structure uses under ``distance`` (see :func:`distance_matrices`)."""
    if distance == "lonlat":
        return dict.fromkeys(STRUCTURES, "lonlat")
    if distance != "great-circle":
        raise ValueError("distance must be 'great-circle' or 'lonlat'")
    return {s: ("great-circle" if s in SPHERE_VALID else "chordal") for s in STRUCTURES}


def choose_likelihood(n: int, likelihood: str = "auto", vecchia_above: int = VECCHIA_ABOVE
                      ) -> str:
    """``"exact"`` or ``"vecchia"``: ``auto`` picks Vecchia above ``vecchia_above`` cells."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}")
    if likelihood == "auto":
        return "vecchia" if n > vecchia_above else "exact"
    return likelihood


def distance_matrices(lon: np.ndarray, lat: np.ndarray, distance: str
                      ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Distance matrices and the metric each structure uses.

    ``"great-circle"`` (km): great-circle for exponential and spherical (valid on the
    sphere), chordal km for gaussian, rational quadratic and linear, which are not
    positive-definite in general on great-circle distance but are on chordal distance (a
    Euclidean distance in R^3; linear excepted, flagged when not PD). ``"lonlat"``
    (degrees): nlme's Euclidean ``~ lon + lat`` for every structure.
    """
    if distance == "lonlat":
        d = lonlat_euclidean(lon, lat)
        return {"lonlat": d}, dict.fromkeys(STRUCTURES, "lonlat")
    if distance != "great-circle":
        raise ValueError("distance must be 'great-circle' or 'lonlat'")
    ch = chordal_km(lon, lat)
    gc = chordal_to_great_circle(ch)
    return ({"great-circle": gc, "chordal": ch},
            {s: ("great-circle" if s in SPHERE_VALID else "chordal") for s in STRUCTURES})


def fit_drivers(data, response: str, smooth: list[str] | None = None,
                factor: list[str] | None = None, distance: str = "great-circle",
                structures: list[str] | tuple[str, ...] = STRUCTURES,
                nuggets: tuple[bool, ...] = (False, True), residual_label: str = "median",
                gls_covariates: bool = True, gamm: bool = True, n_splines: int = 10,
                alpha: float = 0.05, subsample: int = 1000, likelihood: str = "auto",
                vecchia_above: int = VECCHIA_ABOVE,
                neighbors: int = DEFAULT_NEIGHBORS,
                fit_cache: FitCache | None = None) -> DriversResult:
    """GLS AIC table over correlation structures, then the GAMM with the best one.

    ``data``: a DataFrame with ``lon``, ``lat`` (degrees) and the columns, or an xarray
    Dataset on (lat, lon) whose land cells are where ``response`` is finite. Rows with a
    missing value in any used column are dropped. The GLS has an intercept, plus (with
    ``gls_covariates``) linear terms in the smooth covariates and the factor. The GAMM is
    ``response ~ s(smooth...) [+ factor]`` under the lowest-AIC structure (ML); the factor
    is dropped when its p-value > ``alpha`` and the AIC is lower without it.
    Ranges are in km (``great-circle``) or degrees (``lonlat``).

    ``likelihood``: ``"exact"`` (dense Cholesky), ``"vecchia"`` (the Vecchia approximation
    with ``neighbors`` nearest earlier cells, :mod:`rhcloud.drivers.vecchia`; no n x n
    matrix) or ``"auto"``: Vecchia above ``vecchia_above`` cells. The GAMM uses the same.

    ``fit_cache``: GLS fits and the GAMM already made on the same inputs are read from it,
    new ones stored (:mod:`rhcloud.drivers.fitcache`); the results are those of a fresh fit.
    """
    smooth = list(smooth or [])
    factor = list(factor or [])
    if len(factor) > 1:
        raise ValueError("one factor term is supported")
    fac = factor[0] if factor else None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    df = _to_frame(data, response, smooth + factor)
    used = ["lon", "lat", response, *smooth]
    mask = np.ones(len(df), bool)
    for c in used:
        mask &= np.isfinite(pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64))
    if fac is not None:
        mask &= df[fac].notna().to_numpy()
    df = df.loc[mask].reset_index(drop=True)
    if len(df) < 10:
        raise ValueError(f"only {len(df)} complete rows")
    lon = df["lon"].to_numpy(np.float64)
    lat = df["lat"].to_numpy(np.float64)
    kind = choose_likelihood(len(df), likelihood, vecchia_above)
    if kind == "exact":
        dmap, dfor = distance_matrices(lon, lat, distance)
    else:
        dmap, dfor = {}, metric_for(distance)
    timings["distances"] = time.perf_counter() - t0
    cols, names = [np.ones(len(df))], ["(Intercept)"]
    if gls_covariates:
        for c in smooth:
            cols.append(df[c].to_numpy(np.float64))
            names.append(c)
        if fac is not None:
            lev = pd.Categorical(df[fac].astype(str))
            for i, lv in enumerate(lev.categories[1:], start=1):
                cols.append((lev.codes == i).astype(np.float64))
                names.append(f"{fac}{lv}")
    X = np.column_stack(cols)
    y = df[response].to_numpy(np.float64)
    t1 = time.perf_counter()
    structs = [canonical(s) for s in structures if s != "none"]
    memo, inputs = None, ""
    if fit_cache is not None:
        inputs = digest(df[used + factor], X, {
            "likelihood": kind, "distance_for": dfor, "coef_names": names,
            "subsample": subsample, "neighbors": neighbors if kind == "vecchia" else None})
        memo = fit_cache.memo(inputs)
    if kind == "exact":
        table, fits = aic_table(y, X, dmap, structs, nuggets=nuggets, coef_names=names,
                                distance_for=dfor, subsample=subsample, memo=memo)
    else:
        table, fits = aic_table_vecchia(y, X, lon, lat, dfor, structs, nuggets=nuggets,
                                        coef_names=names, neighbors=neighbors,
                                        subsample=subsample, memo=memo)
    timings["gls"] = time.perf_counter() - t1
    best = fits[0]
    sel = None
    if gamm and smooth:
        t2 = time.perf_counter()
        dist, whiten = None, None
        if best.structure != "none":
            if kind == "exact":
                dist = dmap[dfor[best.structure]]
            else:
                whiten = VecchiaLikelihood(y, X, lon, lat, best.structure, dfor[best.structure],
                                           m=neighbors).whiten
        start = None if best.structure == "none" else (best.range, max(best.nugget_value, 0.01))

        def select() -> GAMMSelection:
            return fit_gamm_select(df, response, smooth, dist, factor=fac, alpha=alpha,
                                   structure=best.structure, nugget=best.nugget, start=start,
                                   n_splines=n_splines, whiten=whiten)

        if fit_cache is None:
            sel = select()
        else:  # the GAMM starts from the chosen GLS fit: its parameters are in the key
            sel = fit_cache.cached(
                digest(inputs, "gamm", smooth, fac, alpha, n_splines, best.structure,
                       best.nugget, best.range, best.nugget_value), GAMMSelection, select)
        timings["gamm"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    label = residual_label if residual_label else response
    out = DriversResult(response, label, distance, table, fits, best, sel, df, timings, kind)
    if not math.isfinite(best.aic):
        raise RuntimeError("no GLS structure could be fitted")
    return out
