"""Ensemble stage: the regridded datasets stacked (models, members) with the products, and
what the later stages read of them, computed once and stored in ``results.zarr``:

- ``rh``/``npp`` (dataset, lat, lon) and their land fractions: every member on the reference
  grid (``rhcloud.core.stack``; lazy on the field store);
- ``obs_products`` (product, lat, lon), ``obs_median`` and ``obs_mad``: the products, their
  per-cell median and (unscaled) median absolute deviation;
- ``rh_member_mean``/``npp_member_mean`` (model, lat, lon): each model's member mean (a
  model counts once in every statistic across models), and ``rh_multi_model_mean``;
- ``rh_zonal`` (model, lat) and ``rh_zonal_quantile`` (quantile: 0.25, 0.5, 0.75), and
  ``obs_zonal`` (product, lat): zonal means with oceans counted as zero;
- ``obs_product_difference`` (pair, lat, lon): each pair of products;
- ``landfrac``: the reference grid's land fraction (the largest over the rh datasets);
  ``reference_landfrac``: the real coastline's on the reference grid
  (``rhcloud.core.landmask``), which selects the evaluated cells (``evaluation:``).

Fluxes in g C m-2 yr-1, land fractions 0..1. The table rows of model aggregates (member
means of totals and metrics, ``member_id`` 'ensemble') are made here too.
"""

from __future__ import annotations

import pandas as pd
import xarray as xr

from rhcloud._version import __version__
from rhcloud.config import Config
from rhcloud.core import grids
from rhcloud.core.landmask import coastline_landfrac
from rhcloud.core.metrics import member_mean, obs_median_mad, zonal_mean
from rhcloud.core.stack import align_stacks, present, stack_fields
from rhcloud.stages.regrid import Observations

FLUX = "g m-2 yr-1"
ZONAL_QUANTILES = (0.25, 0.5, 0.75)


def reference_fields(fields: list[xr.Dataset], config: Config,
                     reference: xr.Dataset) -> xr.Dataset:
    """The regridded climatologies of every variable stacked along ``dataset`` (aligned by
    model and member; ``rhcloud.core.stack``), with the reference grid's bounds and cell
    areas."""
    stacked = align_stacks([stack_fields(fields, v) for v in config.variables])
    results = xr.merge([stacked, reference[["lat_bnds", "lon_bnds"]]], compat="override")
    results["cell_area"] = grids.cell_area(reference)
    results["reference_landfrac"] = coastline_landfrac(reference).assign_attrs(
        long_name="land fraction of the reference grid from the real coastline")
    results.attrs = {"reference_grid": config.reference_grid,
                     "period": f"{config.period[0]}-{config.period[1]}",
                     "rhcloud_version": __version__}
    return results


def stack_named(named: dict[str, xr.Dataset], var: str, dim: str) -> xr.DataArray:
    """``var`` of each Dataset of ``named`` along ``dim``, labelled by name."""
    return xr.concat([ds[var] for ds in named.values()], dim=dim, coords="minimal",
                     compat="override", join="override").assign_coords({dim: list(named)})


def products_fields(products: dict[str, xr.Dataset]) -> xr.Dataset:
    """The products stacked, their median and MAD, zonal means and pairwise differences."""
    if not products:
        return xr.Dataset()
    stacked = stack_named(products, "flux", "product").assign_attrs(units=FLUX)
    landfrac = stack_named(products, "landfrac", "product").assign_attrs(units="1")
    med, mad = obs_median_mad(stacked)
    out = xr.Dataset({"obs_products": stacked, "obs_landfrac": landfrac,
                      "obs_median": med.assign_attrs(units=FLUX),
                      "obs_mad": mad.assign_attrs(units=FLUX),
                      "obs_zonal": zonal_mean(stacked, landfrac).assign_attrs(
                          units=FLUX, long_name="zonal mean, oceans as zero")})
    names = list(products)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    if pairs:
        out["obs_product_difference"] = xr.concat(
            [stacked.sel(product=a, drop=True) - stacked.sel(product=b, drop=True)
             for a, b in pairs], dim="pair").assign_coords(
            pair=[f"{a} − {b}" for a, b in pairs]).assign_attrs(units=FLUX)
    return out


def model_fields(results: xr.Dataset) -> xr.Dataset:
    """Member means per model of each variable, the multi-model mean, the models' zonal
    means and their quartiles, and the reference land fraction, computed."""
    out = xr.Dataset()
    for var in ("rh", "npp"):
        if var in results:
            out[f"{var}_member_mean"] = member_mean(present(results, var)).compute() \
                .assign_attrs(units=FLUX, long_name=f"{var}: member mean per model")
    if "rh" in results:
        rh = present(results, "rh")
        land = results["rh_landfrac"].sel(dataset=rh["dataset"])
        zonal = member_mean(zonal_mean(rh, land)).compute()
        out["rh_multi_model_mean"] = out["rh_member_mean"].mean("model").assign_attrs(
            units=FLUX, long_name="mean over models of the member means")
        out["rh_zonal"] = zonal.assign_attrs(units=FLUX, long_name="zonal mean per model "
                                             "(member mean), oceans as zero")
        out["rh_zonal_quantile"] = zonal.quantile(list(ZONAL_QUANTILES), dim="model") \
            .assign_attrs(units=FLUX, long_name="quartiles over models of the zonal means")
        out["landfrac"] = results["rh_landfrac"].max("dataset").compute().assign_attrs(
            units="1", long_name="land fraction of the reference grid (largest over models)")
    return out


def build(results: xr.Dataset, obs: Observations) -> xr.Dataset:
    """The ensemble stage: ``results`` (the stacked datasets) with the products' and the
    models' ensemble fields merged in."""
    return results.merge(xr.merge([products_fields(obs.products), model_fields(results)],
                                  compat="override"), compat="override")


def model_total_rows(totals: pd.DataFrame, variable: str = "rh") -> pd.DataFrame:
    """Model totals for one variable, and each model's member mean (member_id 'ensemble')."""
    rows = totals[(totals["kind"] == "model") & (totals["variable_id"] == variable)]
    ens = rows.groupby("name", as_index=False)["total_PgC_yr"].mean()
    ens = ens.assign(kind="model", member_id="ensemble", variable_id=variable)
    if "landfrac_source" in rows:  # the members' sources (one, unless their fx differ)
        sources = rows.groupby("name")["landfrac_source"].agg(
            lambda x: "; ".join(dict.fromkeys(x)))
        ens["landfrac_source"] = ens["name"].map(sources)
    return pd.concat([rows, ens[rows.columns]], ignore_index=True)


def member_mean_rows(metrics: pd.DataFrame, totals: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` (one row per dataset) with total_PgC_yr, and per model an 'ensemble' row:
    member mean of each metric, with its spread (std across members) in ``*_member_sd``."""
    rh = totals[(totals["kind"] == "model") & (totals["variable_id"] == "rh")]
    metrics = metrics.merge(rh.rename(columns={"name": "source_id"})[
        ["source_id", "member_id", "total_PgC_yr"]], on=["source_id", "member_id"], how="left")
    cols = [c for c in ("n_cells", "n_within_mad", "rmse", "r2", "bias", "total_PgC_yr")
            if c in metrics]
    g = metrics.groupby("source_id")[cols]
    ens = g.mean().reset_index().assign(member_id="ensemble")
    sd = g.std(ddof=1).add_suffix("_member_sd").reset_index()
    ens = ens.merge(sd, on="source_id")
    # "exceeds": |bias| > 2 × the spread of the bias across members; undefined for 1 member
    sd = ens["bias_member_sd"]
    ens["bias_exceeds_member_spread"] = (ens["bias"].abs() > 2 * sd).where(sd.notna())
    return pd.concat([metrics, ens], ignore_index=True)


__all__ = ["build", "member_mean_rows", "model_total_rows", "reference_fields"]
