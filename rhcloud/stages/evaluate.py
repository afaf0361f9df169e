"""Evaluate stage: global totals, Table 1, the residual fields and the site check.

Reads the ensemble stage's fields (datasets × cells, possibly lazy on the field store: the
per-dataset metrics read one dataset at a time) and the observation files already on the
reference grid; computes, per model and member, the statistics of ``rhcloud.core.metrics``:

- ``global_totals``: each dataset's and product's land total (Pg C yr-1), each model's
  member mean, and the summary rows (multi-model mean, product range, median ± MAD, how
  many models fall within them);
- ``model_metrics`` (Table 1): n within median ± MAD, RMSE, R², bias per dataset, and each
  model's member mean ('ensemble' rows) with the spread across members;
- fields: ``residual`` (model − obs median per dataset), ``residual_member_mean``,
  ``residual_median``/``residual_mean`` (the ESM residual over models), the NPP residuals
  against the NPP reference, and the covariates (``cov_<name>``);
- ``site_metrics``: RMSE and bias at the SRDB sites.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from rhcloud.config import Config, EvaluationOptions
from rhcloud.core import metrics as M
from rhcloud.core.sites import site_metrics
from rhcloud.core.stack import present
from rhcloud.stages.climatology import Collected
from rhcloud.stages.ensemble import member_mean_rows, model_total_rows
from rhcloud.stages.regrid import Observations

METRIC_COLUMNS = ["source_id", "member_id", "n_within_mad", "rmse", "r2", "total_PgC_yr",
                  "n_cells"]
FLUX = "g m-2 yr-1"


@dataclass
class Evaluation:
    """The evaluate stage's fields (merged into ``results``) and tables."""

    fields: xr.Dataset
    tables: dict[str, pd.DataFrame]
    skipped: list[str] = field(default_factory=list)  # what was skipped and why


TOTALS_COLUMNS = ["kind", "name", "member_id", "total_PgC_yr", "variable_id", "landfrac_source"]


def totals_table(collected: Collected) -> pd.DataFrame:
    """One row per dataset: kind, name, member_id, variable, total (Pg C yr-1) and the land
    fraction it was weighted with (``sftlf`` or the coastline)."""
    rows = [{"kind": "model", "name": d["source_id"], "member_id": d["member_id"],
             "variable_id": d["variable_id"], "total_PgC_yr": d["land_total_PgC_yr"],
             "landfrac_source": d.get("landfrac_source", "")}
            for d in collected.datasets]
    # the contract's columns first; variable_id and landfrac_source added after them
    cols = TOTALS_COLUMNS
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["variable_id", "name", "member_id"]).reset_index(drop=True)


def summary_rows(model_totals: pd.DataFrame, product_totals: pd.DataFrame,
                 per_member: bool = False) -> pd.DataFrame:
    """Multi-model mean, product range, product median ± MAD (Pg C yr-1), and how many
    models fall within the product range and within median ± MAD."""
    if per_member:
        per_model = model_totals[model_totals["member_id"] != "ensemble"]["total_PgC_yr"]
    else:
        per_model = model_totals[model_totals["member_id"] == "ensemble"]["total_PgC_yr"]
    p = product_totals["total_PgC_yr"].to_numpy()
    med = float(np.median(p)) if p.size else np.nan
    mad = float(np.median(np.abs(p - med))) if p.size else np.nan
    lo, hi = (float(p.min()), float(p.max())) if p.size else (np.nan, np.nan)
    m = per_model.to_numpy()
    rows = [("multi_model_mean", float(m.mean()) if m.size else np.nan),
            ("product_min", lo), ("product_max", hi),
            ("product_median", med), ("product_mad", mad),
            ("n_models_within_product_range", float(np.sum((m >= lo) & (m <= hi)))),
            ("n_models_within_median_mad", float(np.sum(np.abs(m - med) <= mad))),
            ("n_models", float(m.size))]
    return pd.DataFrame([{"kind": "summary", "name": n, "member_id": "", "variable_id": "rh",
                          "total_PgC_yr": v} for n, v in rows])


def ordered_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Table 1 with the output contract's columns first."""
    if metrics.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    rest = [c for c in metrics.columns if c not in METRIC_COLUMNS]
    return metrics[METRIC_COLUMNS + rest]


def evaluated_cells(results: xr.Dataset, options: EvaluationOptions) -> xr.DataArray:
    """Per reference cell, the weight it has in Table 1 (NaN: not evaluated): cells whose
    land fraction (``reference_landfrac``, the coastline's) is at least
    ``options.min_landfrac``, each weighted 1 (``cell``) or by cell area × land fraction
    (``area``)."""
    lf = results["reference_landfrac"]
    keep = (lf >= options.min_landfrac) & (lf > 0)
    w = results["cell_area"] * lf if options.weights == "area" else xr.ones_like(lf)
    return w.where(keep).rename("evaluation_weight").assign_attrs(
        long_name=f"Table 1 weight ({options.weights}) over cells with land fraction >= "
                  f"{options.min_landfrac:g}")


def evaluate(config: Config, results: xr.Dataset, collected: Collected,
             obs: Observations) -> Evaluation:
    """The evaluate stage over the ensemble stage's ``results``. Table 1 and the residual
    fields cover the cells of :func:`evaluated_cells` (``config.evaluation``); the totals
    every cell with land."""
    per_member = config.drivers.per_member
    totals = totals_table(collected)
    fields = xr.Dataset()
    skipped: list[str] = []
    metrics = pd.DataFrame()
    extra_totals = []
    prods = obs.products
    if prods:
        product_totals = pd.DataFrame([
            {"kind": "product", "name": n, "member_id": "", "variable_id": "rh",
             "total_PgC_yr": ds.attrs["native_total"],
             "landfrac_source": ds.attrs.get("landfrac_source", "")}
            for n, ds in prods.items()])
        extra_totals.append(product_totals)
        if len(prods) < 3:
            skipped.append(f"only {len(prods)} product(s): median and MAD are over fewer than "
                           "the paper's three")
    else:
        skipped.append("no observation product: Table 1 and residuals skipped")
    if prods and "rh" in results:
        weights = evaluated_cells(results, config.evaluation)
        fields["evaluation_weight"] = weights
        med = results["obs_median"].where(weights.notnull())
        mad = results["obs_mad"].where(weights.notnull())
        metrics = member_mean_rows(M.model_metrics(present(results, "rh"), med, mad,
                                                   weights), totals)
        fields["residual"] = M.residuals(results["rh"], med).assign_attrs(
            units=FLUX)  # on every dataset (NaN where a member has no rh)
        fields["residual_member_mean"] = M.residuals(results["rh_member_mean"], med) \
            .assign_attrs(units=FLUX, long_name="model member mean - obs median")
        by = present(results, "rh") if per_member else results["rh_member_mean"]
        fields = fields.merge(M.esm_residual(by, med, "dataset" if per_member else "model"))
        mt = model_total_rows(totals, "rh")
        extra_totals.append(mt[mt["member_id"] == "ensemble"])
        extra_totals.append(summary_rows(mt, product_totals, per_member))
    if config.npp_reference and "npp" in results:
        if obs.npp:
            ref_field = next(iter(obs.npp.values()))["flux"]
            fields["npp_reference"] = ref_field
            if "evaluation_weight" in fields:  # the residuals over the evaluated cells
                ref_field = ref_field.where(fields["evaluation_weight"].notnull())
            nres = M.esm_residual(results["npp_member_mean"], ref_field)
            fields["npp_residual_median"] = nres["residual_median"]
            fields["npp_residual_mean"] = nres["residual_mean"]
    elif not config.npp_reference:
        skipped.append("no npp_reference: NPP residuals skipped")
    for name, ds in obs.covariates.items():
        var = "classes" if "classes" in ds else "value" if "value" in ds else "flux"
        fields[f"cov_{name}"] = ds[var]
    if not config.covariates:
        skipped.append("no covariates: the drivers' GAMM is skipped")
    tables = {
        "global_totals": pd.concat([totals, *extra_totals], ignore_index=True),
        "model_metrics": ordered_metrics(metrics),
        "site_metrics": site_metrics(results),
    }
    return Evaluation(fields, tables, skipped)
