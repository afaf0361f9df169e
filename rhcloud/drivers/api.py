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
from typing import Any

import numpy as np
import pandas as pd

from .correlation import SPHERE_VALID, STRUCTURES, canonical
from .distances import chordal_km, chordal_to_great_circle, lonlat_euclidean
from .fitcache import FitCache, digest
from .gamm import GAMMSelection, fit_gamm_select
from .gls import GLSFit
from .schedule import FitData, Plan, run_in_process, run_on_cluster
from .vecchia import DEFAULT_NEIGHBORS

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
    fit_timings: list[dict] = field(default_factory=list)  # per fit: seconds, evals, worker
    excluded: list[dict[str, str]] = field(default_factory=list)  # fits that failed
    executor: str = "in-process"

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
               "timings_s": self.timings, "executor": self.executor,
               "fits": self.fit_timings, "excluded": self.excluded}
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
    paths["summary"] = write_summary(results, directory)
    return paths


def write_summary(results: list[DriversResult], directory: str | Path) -> Path:
    """``directory/tables/drivers_summary.json``: per residual the chosen structure, the GAMM
    and its factor decision, the stage timings, and every fit's seconds, likelihood
    evaluations and worker (``fits``)."""
    tables = Path(directory) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    path = tables / "drivers_summary.json"
    path.write_text(json.dumps([r.summary() for r in results], indent=2, default=_jsonable))
    return path


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    return float(v)


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


def prepare(data, response: str, smooth: list[str] | None = None,
            factor: list[str] | None = None, distance: str = "great-circle",
            residual_label: str = "median", gls_covariates: bool = True, n_splines: int = 10,
            alpha: float = 0.05, subsample: int = 1000, likelihood: str = "auto",
            vecchia_above: int = VECCHIA_ABOVE, neighbors: int = DEFAULT_NEIGHBORS,
            with_digest: bool = True) -> FitData:
    """The complete rows of ``data`` and the GLS design as a :class:`FitData` (see
    :func:`fit_drivers` for the arguments); raises KeyError/ValueError on unusable data."""
    smooth = list(smooth or [])
    factor = list(factor or [])
    if len(factor) > 1:
        raise ValueError("one factor term is supported")
    fac = factor[0] if factor else None
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
    dfor = metric_for(distance)
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
    inputs = ""
    if with_digest:  # the fit cache's key of the data and options (as before the scheduler)
        inputs = digest(df[used + factor], X, {
            "likelihood": kind, "distance_for": dfor, "coef_names": names,
            "subsample": subsample, "neighbors": neighbors if kind == "vecchia" else None})
    label = residual_label if residual_label else response
    return FitData(label, y, X, lon, lat, names, dfor, kind, subsample, neighbors, df,
                   response, smooth, fac, alpha, n_splines, inputs=inputs)


def fit_drivers(data, response: str, smooth: list[str] | None = None,
                factor: list[str] | None = None, distance: str = "great-circle",
                structures: list[str] | tuple[str, ...] = STRUCTURES,
                nuggets: tuple[bool, ...] = (False, True), residual_label: str = "median",
                gls_covariates: bool = True, gamm: bool = True, n_splines: int = 10,
                alpha: float = 0.05, subsample: int = 1000, likelihood: str = "auto",
                vecchia_above: int = VECCHIA_ABOVE,
                neighbors: int = DEFAULT_NEIGHBORS,
                fit_cache: FitCache | None = None, client=None) -> DriversResult:
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

    ``client``: a ``distributed.Client``; every correlated fit is then a task on its
    workers (:mod:`rhcloud.drivers.schedule`); without one the fits run here. A fit that
    fails on the cluster (after Dask's retries) is left out of the table and listed in
    ``DriversResult.excluded``.
    """
    results, excluded, errors = fit_residuals(
        {residual_label: data}, response, smooth, factor, distance=distance,
        structures=structures, nuggets=nuggets, gls_covariates=gls_covariates, gamm=gamm,
        n_splines=n_splines, alpha=alpha, subsample=subsample, likelihood=likelihood,
        vecchia_above=vecchia_above, neighbors=neighbors, fit_cache=fit_cache, client=client,
        _raise=True)
    return results[0]


def fit_residuals(tables: dict[str, Any], response: str, smooth: list[str] | None = None,
                  factor: list[str] | None = None, distance: str = "great-circle",
                  structures: list[str] | tuple[str, ...] = STRUCTURES,
                  nuggets: tuple[bool, ...] = (False, True), gls_covariates: bool = True,
                  gamm: bool = True, n_splines: int = 10, alpha: float = 0.05,
                  subsample: int = 1000, likelihood: str = "auto",
                  vecchia_above: int = VECCHIA_ABOVE, neighbors: int = DEFAULT_NEIGHBORS,
                  fit_cache: FitCache | None = None, client=None, _raise: bool = False
                  ) -> tuple[list[DriversResult], list[dict[str, str]], dict[str, str]]:
    """:func:`fit_drivers` on several residual fields at once (``{label: data}``, e.g. the
    median and the mean residual), so that later fields start from the first one's optima
    and, with a ``client``, all their fits share the cluster.

    Returns the results (in the order of ``tables``), the exclusion rows of fits that could
    not be made (``zstore``, ``reason``: a residual whose table could not be made at all is
    one row, ``drivers (<label> residual)``) and ``{label: reason}`` of those residuals."""
    t0 = time.perf_counter()
    prepared: dict[str, FitData] = {}
    excluded: list[dict[str, str]] = []
    errors: dict[str, str] = {}
    for label, data in tables.items():
        try:
            prepared[label] = prepare(data, response, smooth, factor, distance, label,
                                      gls_covariates, n_splines, alpha, subsample, likelihood,
                                      vecchia_above, neighbors, with_digest=fit_cache is not None)
        except Exception as exc:
            if _raise:
                raise
            errors[label] = f"{type(exc).__name__}: {exc}"
            excluded.append({"zstore": f"drivers ({label} residual)", "reason": errors[label]})
    prep_s = time.perf_counter() - t0
    structs = [canonical(s) for s in structures if s != "none"]
    plan = Plan(prepared, structs, tuple(nuggets), fit_cache, gamm)
    t1 = time.perf_counter()
    if client is None:
        outcomes = run_in_process(plan, lambda *a, **k: fit_gamm_select(*a, **k),
                                  catch=not _raise)
        executor = "in-process"
    else:
        outcomes = run_on_cluster(plan, client)
        executor = f"dask ({len(client.scheduler_info().get('workers', {}))} workers)"
    stage_s = time.perf_counter() - t1
    results = []
    for label, d in prepared.items():
        out = outcomes[label]
        if out.error is not None:  # in-process, with _raise False
            errors[label] = f"{type(out.error).__name__}: {out.error}"
            excluded.append({"zstore": f"drivers ({label} residual)", "reason": errors[label]})
            continue
        table, fits = out.table(structs, tuple(nuggets))
        best = fits[0]
        if not math.isfinite(best.aic):
            reason = "RuntimeError: no GLS structure could be fitted"
            if _raise:
                raise RuntimeError("no GLS structure could be fitted")
            errors[label] = reason
            excluded.append({"zstore": f"drivers ({label} residual)", "reason": reason})
            continue
        excluded.extend(out.excluded)
        built = sum(t.get("distance_build_s", 0.0) for t in out.timings)
        timings = {"prepare": prep_s, "distances": built, "gls": out.gls_s,
                   "gamm": out.gamm_s, "total": prep_s + (out.gls_s + out.gamm_s
                                                         if client is None else stage_s)}
        results.append(DriversResult(response, label, distance, table, fits, best, out.gamm,
                                     d.frame, timings, d.likelihood, out.timings,
                                     out.excluded, executor))
    return results, excluded, errors
