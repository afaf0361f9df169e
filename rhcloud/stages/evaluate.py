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
- ``site_metrics``: RMSE and bias at the SRDB sites;
- ``regional_totals``/``regional_metrics``: totals and Table 1 per AR6 land region and
  latitude band, with the remainder and global rows (``rhcloud.core.regions``), and the
  field ``region_fraction`` (region, lat, lon);
- ``responses``: Rh and the residual binned by each covariate (``rhcloud.core.responses``);
- ``scores``: bias, RMSE, Taylor and response scores in [0, 1] and the overall score per
  dataset and per model (its member-mean field; ``rhcloud.core.scores``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from rhcloud.config import Config, EvaluationOptions
from rhcloud.core import metrics as M
from rhcloud.core import regions as R
from rhcloud.core import responses as RS
from rhcloud.core import scores as S
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
    opts = config.evaluation
    if prods and "rh" in results:
        views = ModelViews(results)
        if opts.regions:
            fractions = R.region_fractions(results[["lat_bnds", "lon_bnds"]],
                                           tuple(opts.regions), opts.region_resolution)
            fields["region_fraction"] = fractions
            tables.update(regional_tables(results, views, fractions,
                                          fields.get("evaluation_weight")))
        covariates = {c: fields[f"cov_{c}"] for c in opts.responses if f"cov_{c}" in fields}
        missing = [c for c in opts.responses if c not in covariates]
        if missing:
            skipped.append(f"responses to {', '.join(missing)} skipped: no such covariate")
        responses = response_table(results, fields, views, covariates, opts.response_bins,
                                   opts.response_edges)
        tables["responses"] = responses
        tables["scores"] = scores_table(results, views, responses, opts.score_weights)
    return Evaluation(fields, tables, skipped)


# ---------------------------------------------------------------------------------------
# regions, responses, scores
# ---------------------------------------------------------------------------------------

ENSEMBLE = "ensemble"


KEEP_VIEWS_BYTES = 256 * 2**20
"""Up to this size (rh fields and land fractions of every dataset and member mean) the views
are loaded once and kept for the three tables that pass over them; above, every pass
streams them from the field store again, one field at a time."""


@dataclass
class ModelViews:
    """Iterates (source_id, member_id, rh field, land fraction) over every dataset with rh,
    then each model's member mean ('ensemble'; its land fraction the members' largest).
    Kept in memory after the first pass when they fit in ``keep_bytes``; otherwise loaded
    one field at a time, each pass reading them again (memory stays one field whatever
    the number of members)."""

    results: xr.Dataset
    keep_bytes: int = KEEP_VIEWS_BYTES
    _kept: list | None = field(default=None, init=False, repr=False)

    def __iter__(self):
        if self._kept is not None:
            return iter(self._kept)
        rh = self.results["rh"]
        n = rh.sizes["dataset"] + self.results["rh_member_mean"].sizes["model"]
        if 2 * n * rh.isel(dataset=0).nbytes <= self.keep_bytes:
            self._kept = list(model_views(self.results))
            return iter(self._kept)
        return model_views(self.results)


def model_views(results: xr.Dataset):
    """The generator behind :class:`ModelViews`."""
    rh = present(results, "rh")
    for i in range(rh.sizes["dataset"]):
        one = rh.isel(dataset=i)
        label = one["dataset"].values
        yield (str(one["source_id"].values), str(one["member_id"].values), one.values,
               results["rh_landfrac"].sel(dataset=label).values)
    land = results["rh_landfrac"].sel(dataset=rh["dataset"])
    for model in results["rh_member_mean"]["model"].values:
        members = land.isel(dataset=np.flatnonzero(land["source_id"].values == model))
        yield (str(model), ENSEMBLE, results["rh_member_mean"].sel(model=model).values,
               members.max("dataset").values)


def regional_tables(results: xr.Dataset, views: list, fractions: xr.DataArray,
                    weights: xr.DataArray | None = None) -> dict[str, pd.DataFrame]:
    """``regional_totals`` (models, products, summaries per region, on the reference grid)
    and ``regional_metrics`` (Table 1 per region and dataset, the models' 'ensemble' rows
    the member means of each metric, as in Table 1)."""
    area = results["cell_area"]
    labels = [*fractions["region"].values.tolist(), R.GLOBAL]
    sets = [*fractions["region_set"].values.tolist(), R.GLOBAL]
    # Table 1's cells and weights (``weights``: the evaluation options'), so that the global
    # rows are Table 1
    med, mad = results["obs_median"], results["obs_mad"]
    if weights is not None:
        med, mad = med.where(weights.notnull()), mad.where(weights.notnull())
    rows, metric_rows = [], []

    def total_rows(kind, name, member, values):
        return [{"region": r, "kind": kind, "name": name, "member_id": member,
                 "total_PgC_yr": float(v), "region_set": s}
                for r, s, v in zip(labels, sets, values, strict=True)]

    for sid, mid, field_, land in views:
        if mid == ENSEMBLE:
            continue
        rows += total_rows("model", sid, mid, R.regional_totals(field_, land, area, fractions))
        metric_rows.append(R.regional_metrics(field_, med, mad, fractions, weights)
                           .assign(source_id=sid, member_id=mid))
    totals = pd.DataFrame(rows)
    ens = totals.groupby(["region", "region_set", "name"], as_index=False, sort=False)[
        "total_PgC_yr"].mean().assign(kind="model", member_id=ENSEMBLE)
    prod_rows = []
    for p in results["product"].values:
        prod_rows += total_rows("product", str(p), "", R.regional_totals(
            results["obs_products"].sel(product=p), results["obs_landfrac"].sel(product=p),
            area, fractions))
    prod = pd.DataFrame(prod_rows)
    summary = []
    for (region, rset), g in prod.groupby(["region", "region_set"], sort=False):
        p = g["total_PgC_yr"].to_numpy()
        m = ens[ens["region"] == region]["total_PgC_yr"].to_numpy()
        pmed = float(np.median(p))
        for name, v in (("multi_model_mean", float(m.mean())), ("product_min", p.min()),
                        ("product_max", p.max()), ("product_median", pmed),
                        ("product_mad", float(np.median(np.abs(p - pmed))))):
            summary.append({"region": region, "kind": "summary", "name": name,
                            "member_id": "", "total_PgC_yr": float(v), "region_set": rset})
    cols = ["region", "kind", "name", "member_id", "total_PgC_yr", "region_set"]
    regional = pd.concat([totals, ens[cols], prod, pd.DataFrame(summary)], ignore_index=True)
    names = dict(zip(fractions["region"].values.tolist(),
                     fractions["region_name"].values.tolist(), strict=True))
    regional["region_name"] = regional["region"].map(names).fillna("global land")
    metrics = pd.concat(metric_rows, ignore_index=True)
    metrics = metrics.merge(totals.rename(columns={"name": "source_id"})[
        ["region", "source_id", "member_id", "total_PgC_yr"]],
        on=["region", "source_id", "member_id"], how="left")
    value_cols = ["n_cells", "n_within_mad", "rmse", "r2", "bias", "total_PgC_yr"]
    ens_m = metrics.groupby(["region", "region_set", "source_id"], as_index=False,
                            sort=False)[value_cols].mean().assign(member_id=ENSEMBLE)
    metrics = pd.concat([metrics, ens_m], ignore_index=True)
    metrics = metrics[["region", "region_set", "source_id", "member_id", *value_cols]]
    return {"regional_totals": regional, "regional_metrics": metrics}


def response_table(results: xr.Dataset, fields: xr.Dataset, views: list,
                   covariates: dict[str, xr.DataArray], n_bins: int,
                   edges: dict[str, list[float]]) -> pd.DataFrame:
    """``responses``: per covariate, Rh (``variable`` rh) and model − obs median
    (``variable`` residual) binned by the covariate: the product median and each product
    (kind 'product', the median named 'median'), every model dataset and member mean, the
    ESM residuals (kind 'summary': residual_median, residual_mean) and the products' band
    per bin (kind 'summary': product_min, product_max)."""
    med = results["obs_median"].values
    frames = []
    for cov, x_da in covariates.items():
        x = x_da.values
        e = np.asarray(edges[cov], float) if cov in edges else \
            RS.quantile_edges(np.where(np.isfinite(med), x, np.nan), n_bins)
        curves = []

        def add(variable, kind, name, member, y, curves=curves, x=x, e=e):
            curves.append(RS.binned(y, x, e).assign(variable=variable, kind=kind, name=name,
                                                    member_id=member))

        add("rh", "product", "median", "", med)
        add("residual", "product", "median", "", med - med)
        for p in results["product"].values:
            prod = results["obs_products"].sel(product=p).values
            add("rh", "product", str(p), "", prod)
            add("residual", "product", str(p), "", prod - med)
        products = pd.concat([c for c in curves if (c["name"] != "median").all()])
        for _variable, g in products.groupby("variable", sort=False):
            band = g.groupby("bin")["mean"]
            base = g[g["name"] == g["name"].iloc[0]].set_index("bin")
            for name, vals in (("product_min", band.min()), ("product_max", band.max())):
                curves.append(base.assign(mean=vals, sd=np.nan, kind="summary", name=name,
                                          member_id="").reset_index())
        for sid, mid, field_, _land in views:
            add("rh", "model", sid, mid, field_)
            add("residual", "model", sid, mid, field_ - med)
        for name in ("residual_median", "residual_mean"):
            if name in fields:
                add("residual", "summary", name, "", fields[name].values)
        frames.append(pd.concat(curves, ignore_index=True).assign(covariate=cov))
    cols = ["covariate", "variable", "kind", "name", "member_id", "bin", "lower", "upper",
            "x_mean", "mean", "sd", "n_cells"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


def scores_table(results: xr.Dataset, views: list, responses: pd.DataFrame,
                 weights: dict[str, float]) -> pd.DataFrame:
    """``scores``: per dataset and per model (member mean, 'ensemble') the statistics
    against the obs median, their scores in [0, 1], the response scores and the overall
    score; ``rank`` orders the models' ensemble rows by overall score (1 = best)."""
    med = results["obs_median"].values
    rh = responses[responses["variable"] == "rh"]
    observed = {c: g[(g["kind"] == "product") & (g["name"] == "median")].set_index("bin")
                for c, g in rh.groupby("covariate", sort=False)}
    curves = {k: g.set_index("bin")["mean"]
              for k, g in rh[rh["kind"] == "model"].groupby(["covariate", "name", "member_id"])}
    rows = []
    for sid, mid, field_, _land in views:
        stats = S.field_statistics(field_, med)
        row = {"source_id": sid, "member_id": mid, **stats, **S.statistic_scores(stats)}
        for cov, obs_curve in observed.items():
            m = curves[(cov, sid, mid)].reindex(obs_curve.index)
            row[f"score_response_{cov}"] = RS.response_score(
                m.to_numpy(), obs_curve["mean"].to_numpy(), obs_curve["n_cells"].to_numpy())
        row["score_overall"] = S.overall_score(row, weights)
        rows.append(row)
    table = pd.DataFrame(rows)
    ens = table["member_id"] == ENSEMBLE
    table["rank"] = table["score_overall"].where(ens).rank(ascending=False, method="min")
    return table
