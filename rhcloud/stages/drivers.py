"""The drivers stage of a run: the ESM residual fields (median and mean over models) against
the covariates, through ``rhcloud.drivers.fit_drivers`` (GLS AIC table, then the GAMM with the
chosen correlation structure).

Inputs come from the evaluation's fields on the reference grid: ``residual_median`` /
``residual_mean`` (g C m-2 yr-1), ``cov_MAT`` (°C), ``cov_MAP`` (mm yr-1), ``cov_SOC``
(g C m-2), ``npp_residual_median`` (as ``NPPres``, g C m-2 yr-1) and ``cov_lithology``
(factor). ``drivers: {grid: <spec>}`` first puts them on another grid (conservative means;
lithology by majority) — the demo uses a coarser grid to fit its time budget; the default is
the whole residual field on the reference grid. The statistics engine is
:mod:`rhcloud.drivers`; this module chooses its inputs and options from the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from rhcloud.config import DriversOptions
from rhcloud.errors import Exclusion
from rhcloud.stages.regrid import reference_grid, to_grid

if TYPE_CHECKING:
    from rhcloud.drivers.fitcache import FitCache

SMOOTH_FIELDS = {"MAT": "cov_MAT", "MAP": "cov_MAP", "SOC": "cov_SOC",
                 "NPPres": "npp_residual_median"}
FACTOR_FIELDS = {"lithology": "cov_lithology"}
UNITS = {"MAT": "°C", "MAP": "mm yr$^{-1}$", "SOC": "g C m$^{-2}$",
         "NPPres": "g C m$^{-2}$ yr$^{-1}$"}


@dataclass
class DriversOutcome:
    results: list[Any] = field(default_factory=list)  # DriversResult per residual
    skipped: list[str] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)


def drivers_inputs(fields: xr.Dataset, residual: str,
                   target: xr.Dataset | None = None) -> tuple[xr.Dataset, list[str], list[str]]:
    """The residual and covariates as one Dataset (optionally on ``target``), and the names
    of the smooth and factor terms present."""
    smooth = [k for k, v in SMOOTH_FIELDS.items() if v in fields]
    factor = [k for k, v in FACTOR_FIELDS.items() if v in fields]
    names = {"residual": residual, **{k: SMOOTH_FIELDS[k] for k in smooth},
             **{k: FACTOR_FIELDS[k] for k in factor}}
    if target is not None:
        fields = to_grid(fields, list(dict.fromkeys(names.values())), target,
                         FACTOR_FIELDS.values())
    out = {k: fields[v] for k, v in names.items()}
    ds = xr.Dataset({k: v.drop_vars([c for c in v.coords if c not in ("lat", "lon")])
                     for k, v in out.items()}).compute()
    return ds, smooth, factor


def run_drivers(fields: xr.Dataset, options: DriversOptions,
                fit_cache: FitCache | None = None, client=None) -> DriversOutcome:
    """Fit the drivers of the median and the mean ESM residual (skipped, with the reason,
    when the residual or every covariate is missing). Fits found in ``fit_cache`` are not
    made again; with a Dask ``client`` the fits are tasks on its workers."""
    from rhcloud.drivers.api import fit_residuals

    outcome = DriversOutcome()
    if not options.residuals:
        outcome.skipped.append("drivers skipped: drivers.residuals is empty")
        return outcome
    if "residual_median" not in fields:
        outcome.skipped.append("drivers skipped: no residual field (no product or no rh)")
        return outcome
    if not any(v in fields for v in (*SMOOTH_FIELDS.values(), *FACTOR_FIELDS.values())):
        outcome.skipped.append("drivers skipped: no covariates configured")
        return outcome
    labels = options.residuals
    if options.grid:  # every residual and covariate regridded once
        target = reference_grid(options.grid)
        used = [f"residual_{label}" for label in labels if f"residual_{label}" in fields]
        used += [v for v in (*SMOOTH_FIELDS.values(), *FACTOR_FIELDS.values()) if v in fields]
        fields = to_grid(fields, list(dict.fromkeys(used)), target, FACTOR_FIELDS.values())
    inputs = {label: drivers_inputs(fields, f"residual_{label}") for label in labels}
    _, smooth, factor = next(iter(inputs.values()))
    # both residuals at once: the mean's fits start from the median's, all share the cluster
    try:
        outcome.results, excluded, _ = fit_residuals(
            {label: ds for label, (ds, _, _) in inputs.items()}, response="residual",
            smooth=smooth, factor=factor, distance=options.distance,
            structures=options.structures, nuggets=options.nuggets,
            likelihood=options.likelihood, fit_cache=fit_cache, client=client)
    except Exception as exc:  # noqa: BLE001 - the statistics never sink a finished run
        excluded = [{"zstore": f"drivers ({label} residual)",
                     "reason": f"{type(exc).__name__}: {exc}"} for label in labels]
    outcome.excluded.extend(Exclusion(e["zstore"], e["reason"], "drivers") for e in excluded)
    if options.grid:
        outcome.skipped.append(f"drivers fitted on {options.grid} (residual and covariates "
                               "regridded conservatively, lithology by majority)")
    return outcome


def write_summary(results: list[Any], out: Path) -> Path:
    """``tables/drivers_summary.json`` under ``out``: the chosen structures, the GAMMs, and
    every fit's seconds, evaluations and worker."""
    from rhcloud.drivers.api import write_summary as _write

    return _write(results, out)


def drivers_tables(outcome: DriversOutcome) -> dict[str, pd.DataFrame]:
    """``gls_aic``, ``gamm_terms`` and ``gamm_effects`` over both residuals
    (``rhcloud.drivers.api.drivers_tables``: the schema ``rhcloud drivers`` writes too)."""
    from rhcloud.drivers.api import drivers_tables as tables

    return tables(outcome.results) if outcome.results else {}


def drivers_figures(outcome: DriversOutcome, figdir: Path) -> list[Path]:
    """Partial-effect panels (Figs. 6 and 7) and the AIC table figure per residual."""
    from rhcloud.drivers.figures import drivers_figures as figures

    return figures(outcome.results, figdir, units=UNITS)
