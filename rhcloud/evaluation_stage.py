"""The evaluation stage of a run: products and covariates onto the reference grid, the obs
median and MAD, Table 1, global totals and residual fields. Works on the regrid stage's
stacked fields (datasets × cells, possibly lazy on the field store: read block by block);
reads only the product and covariate files, which are small once on the reference grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from rhcloud import evaluate, products
from rhcloud.stack import present


@dataclass
class Evaluation:
    fields: xr.Dataset  # obs products, median, MAD, residuals, covariates (reference grid)
    metrics: pd.DataFrame  # tables/model_metrics.csv
    totals: pd.DataFrame  # product and summary rows for tables/global_totals.csv
    conservation: pd.DataFrame  # product/covariate rows of tables/regrid_conservation.csv
    excluded: list[dict[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # stages skipped and why


def _fail(entry: dict[str, Any], exc: BaseException) -> dict[str, str]:
    name = entry.get("name") or entry.get("reader", "?")
    return {"zstore": str(entry.get("path", name)),
            "reason": f"{name}: {type(exc).__name__}: {exc}"}


@dataclass
class Reads:
    """The products', NPP reference's and covariates' reader outputs, persisted (on the
    cluster when a client is active, so they are read while the climatologies compute)."""

    products: list[tuple[dict, xr.Dataset]] = field(default_factory=list)
    npp: list[tuple[dict, xr.Dataset]] = field(default_factory=list)
    covariates: list[tuple[dict, xr.Dataset]] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)


def start_reads(config) -> Reads:
    """Open every product and covariate file of ``config`` and persist the readers' outputs
    all at once; a file that cannot be opened is excluded, the others go on."""
    import dask

    reads = Reads()
    groups = {"products": list(config.products),
              "npp": [config.npp_reference] if config.npp_reference else [],
              "covariates": [{**e, "name": n} for n, e in config.covariates.items()]}
    for group, entries in groups.items():
        for entry in entries:
            try:
                getattr(reads, group).append(
                    (entry, products.read_entry(entry, config.storage_options)))
            except Exception as exc:  # noqa: BLE001 - one bad file never sinks the run
                reads.excluded.append(_fail(entry, exc))
    lazy = [*reads.products, *reads.npp, *reads.covariates]
    # one persist for all (read in parallel); each is then gathered on its own so that a
    # failing file is its own failure. (A single dask.compute over several readers'
    # Datasets is cancelled with "lost dependencies" by distributed 2026.8; persist is not.)
    persisted = iter(dask.persist(*[ds for _, ds in lazy]))
    for group in groups:
        setattr(reads, group, [(e, next(persisted)) for e, _ in getattr(reads, group)])
    return reads


def _gather(pending: list[tuple[dict, xr.Dataset]],
            excluded: list[dict[str, str]]) -> list[tuple[dict, xr.Dataset]]:
    out = []
    for entry, ds in pending:
        try:
            out.append((entry, ds.compute()))
        except Exception as exc:  # noqa: BLE001
            excluded.append(_fail(entry, exc))
    return out


def _read(pending: list[tuple[dict, xr.Dataset]], reference: xr.Dataset,
          excluded: list[dict[str, str]]) -> tuple[dict[str, xr.Dataset], list[dict]]:
    out, rows = {}, []
    # read once: the readers' outputs are coarse (block-averaged), and the regrid and both
    # conservation totals would otherwise each read the file again
    for entry, native in _gather(pending, excluded):
        name = entry.get("name") or entry.get("reader", "?")
        try:
            on_ref, row = products.to_reference(native, reference)
            on_ref = on_ref.compute()
        except Exception as exc:  # noqa: BLE001 - one bad file never sinks the run
            excluded.append(_fail(entry, exc))
            continue
        out[name] = on_ref
        if row is not None:  # categorical fields have no total to conserve
            row["name"] = name
            on_ref.attrs["native_total"] = row["total_native_PgC_yr"]
            rows.append(row)
    return out, rows


@dataclass
class Observations:
    """The products, NPP reference and covariates on the reference grid, in memory, by
    name; their conservation rows and the files that failed."""

    products: dict[str, xr.Dataset] = field(default_factory=dict)
    npp: dict[str, xr.Dataset] = field(default_factory=dict)
    covariates: dict[str, xr.Dataset] = field(default_factory=dict)
    conservation: dict[str, list[dict]] = field(default_factory=dict)
    excluded: list[dict[str, str]] = field(default_factory=list)


def gather_reads(reads: Reads, reference: xr.Dataset) -> Observations:
    """Gather the files read by :func:`start_reads` (on the cluster that read them) and put
    them on the reference grid."""
    obs = Observations(excluded=list(reads.excluded))
    for group in ("products", "npp", "covariates"):
        named, rows = _read(getattr(reads, group), reference, obs.excluded)
        setattr(obs, group, named)
        obs.conservation[group] = rows
    return obs


def _stack(named: dict[str, xr.Dataset], var: str, dim: str) -> xr.DataArray:
    return xr.concat([ds[var] for ds in named.values()], dim=dim, coords="minimal",
                     compat="override", join="override").assign_coords({dim: list(named)})


def model_rows(totals: pd.DataFrame, variable: str = "rh") -> pd.DataFrame:
    """Model totals for one variable, and each model's member mean (member_id 'ensemble')."""
    rows = totals[(totals["kind"] == "model") & (totals["variable_id"] == variable)]
    ens = rows.groupby("name", as_index=False)["total_PgC_yr"].mean()
    ens = ens.assign(kind="model", member_id="ensemble", variable_id=variable)
    return pd.concat([rows, ens[rows.columns]], ignore_index=True)


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


def evaluate_run(config, results: xr.Dataset, totals: pd.DataFrame,
                 reference: xr.Dataset, obs: Observations | None = None) -> Evaluation:
    """Everything the evaluation needs from the products and covariates of ``config``
    (``obs``: from :func:`gather_reads`, when the files were read ahead; otherwise they
    are read now). Statistics over ``results``' datasets are computed block by block, so
    its fields may be lazy."""
    obs = gather_reads(start_reads(config), reference) if obs is None else obs
    excluded: list[dict[str, str]] = list(obs.excluded)
    skipped: list[str] = []
    prods, rows = obs.products, list(obs.conservation["products"])
    fields = xr.Dataset()
    metrics = pd.DataFrame()
    extra_totals = []
    if prods:
        stacked = _stack(prods, "flux", "product")
        med, mad = evaluate.obs_median_mad(stacked)
        fields["obs_products"] = stacked.assign_attrs(units="g m-2 yr-1")
        fields["obs_landfrac"] = _stack(prods, "landfrac", "product").assign_attrs(units="1")
        fields["obs_median"] = med.assign_attrs(units="g m-2 yr-1")
        fields["obs_mad"] = mad.assign_attrs(units="g m-2 yr-1")
        extra_totals.append(pd.DataFrame([
            {"kind": "product", "name": n, "member_id": "", "variable_id": "rh",
             "total_PgC_yr": ds.attrs["native_total"]} for n, ds in prods.items()]))
        if len(prods) < 3:
            skipped.append(f"only {len(prods)} product(s): median and MAD are over fewer than "
                           "the paper's three")
    else:
        skipped.append("no observation product: Table 1 and residuals skipped")
    if prods and "rh" in results:
        models = present(results, "rh")
        metrics = evaluate.model_metrics(models, med, mad)
        metrics = _with_ensemble(metrics, totals)
        res = evaluate.esm_residual(models, med, per_member=bool(
            config.drivers.get("per_member", False)))
        fields["residual"] = evaluate.residuals(results["rh"], med).assign_attrs(
            units="g m-2 yr-1")  # on every dataset (NaN where a member has no rh)
        fields = fields.merge(res)
        product_totals = extra_totals[0]
        mt = model_rows(totals, "rh")
        extra_totals.append(mt[mt["member_id"] == "ensemble"])
        extra_totals.append(summary_rows(mt, product_totals,
                                         bool(config.drivers.get("per_member", False))))
    npp_ref = config.npp_reference
    if npp_ref and "npp" in results:
        npp = obs.npp
        rows += obs.conservation["npp"]
        if npp:
            ref_field = next(iter(npp.values()))["flux"]
            fields["npp_reference"] = ref_field
            nres = evaluate.esm_residual(present(results, "npp"), ref_field)
            fields["npp_residual_median"] = nres["residual_median"]
            fields["npp_residual_mean"] = nres["residual_mean"]
    elif not npp_ref:
        skipped.append("no npp_reference: NPP residuals skipped")
    cov_fields = obs.covariates
    rows += obs.conservation["covariates"]
    for name, ds in cov_fields.items():
        var = "classes" if "classes" in ds else "value" if "value" in ds else "flux"
        fields[f"cov_{name}"] = ds[var]
    if not config.covariates:
        skipped.append("no covariates: the drivers' GAMM is skipped")
    conservation = pd.DataFrame(rows)
    return Evaluation(fields, metrics, pd.concat(extra_totals, ignore_index=True)
                      if extra_totals else pd.DataFrame(), conservation, excluded, skipped)


def _with_ensemble(metrics: pd.DataFrame, totals: pd.DataFrame) -> pd.DataFrame:
    """Add total_PgC_yr per dataset, and per model an 'ensemble' row: member mean of each
    metric, with its spread (std across members) in ``*_member_sd`` columns."""
    rh = totals[(totals["kind"] == "model") & (totals["variable_id"] == "rh")]
    metrics = metrics.merge(rh.rename(columns={"name": "source_id"})[
        ["source_id", "member_id", "total_PgC_yr"]], on=["source_id", "member_id"], how="left")
    cols = ["n_within_mad", "rmse", "r2", "bias", "total_PgC_yr"]
    g = metrics.groupby("source_id")[cols]
    ens = g.mean().reset_index().assign(member_id="ensemble")
    sd = g.std(ddof=1).add_suffix("_member_sd").reset_index()
    ens = ens.merge(sd, on="source_id")
    # "exceeds": |bias| > 2 × the spread of the bias across members; undefined for 1 member
    sd = ens["bias_member_sd"]
    ens["bias_exceeds_member_spread"] = (ens["bias"].abs() > 2 * sd).where(sd.notna())
    return pd.concat([metrics, ens], ignore_index=True)
