"""Site-level check against real observations: the Soil Respiration Database (SRDB).

Each model and product field on the reference grid is sampled at the SRDB records that have
an annual Rh, coordinates and no manipulation (903 records shipped in ``rhcloud/data``), at
the reference-grid cell containing the site. Records are compared one by one (several
records at one site or in one cell each count); a record whose cell has no value in a field
is left out for that field. Units: g C m-2 yr-1.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import xarray as xr

from rhcloud.core.stack import present


def load_srdb() -> pd.DataFrame:
    """The shipped SRDB Rh records (Bond-Lamberty & Thomson 2010; MIT licence)."""
    with resources.files("rhcloud.data").joinpath("srdb_rh.csv").open() as f:
        return pd.read_csv(f)


def cell_index(grid_bnds: np.ndarray, values: np.ndarray, periodic: bool = False) -> np.ndarray:
    """Index of the cell (bounds (n, 2), ascending) containing each value; -1 outside."""
    lo, hi = grid_bnds[:, 0], grid_bnds[:, 1]
    v = np.mod(values - lo[0], 360.0) + lo[0] if periodic else values
    idx = np.searchsorted(hi, v, side="right")
    idx = np.where(idx >= lo.size, lo.size - 1, idx)
    inside = (v >= lo[idx]) & (v <= hi[idx])
    return np.where(inside, idx, -1)


def sample(field: xr.DataArray, lat_bnds: np.ndarray, lon_bnds: np.ndarray,
           sites: pd.DataFrame) -> xr.DataArray:
    """``field`` (..., lat, lon) at the cells holding ``sites`` → (..., site)."""
    i = cell_index(np.asarray(lat_bnds), sites["Latitude"].to_numpy(float))
    j = cell_index(np.asarray(lon_bnds), sites["Longitude"].to_numpy(float), periodic=True)
    ok = (i >= 0) & (j >= 0)
    ii = xr.DataArray(np.where(ok, i, 0), dims="site")
    jj = xr.DataArray(np.where(ok, j, 0), dims="site")
    out = field.isel(lat=ii, lon=jj).drop_vars(["lat", "lon"], errors="ignore")
    return out.where(xr.DataArray(ok, dims="site"))


def _row(values: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(values) & np.isfinite(obs)
    err = values[ok] - obs[ok]
    return {"n_sites": int(ok.sum()),
            "rmse": float(np.sqrt(np.mean(err**2))) if ok.any() else np.nan,
            "bias": float(np.mean(err)) if ok.any() else np.nan}


def site_metrics(results: xr.Dataset, sites: pd.DataFrame | None = None) -> pd.DataFrame:
    """RMSE and bias at SRDB sites for every model dataset, each model's member mean, and
    each product: columns kind, name, member_id, n_sites, rmse, bias. ``results`` holds the
    ensemble stage's fields (``rh``, ``rh_member_mean``, ``obs_products``)."""
    sites = load_srdb() if sites is None else sites
    obs = sites["Rh_annual"].to_numpy(float)
    lat_b, lon_b = results["lat_bnds"].values, results["lon_bnds"].values
    rows = []
    if "rh" in results:
        rh = present(results, "rh")
        at = sample(rh, lat_b, lon_b, sites).values
        for k in range(at.shape[0]):
            rows.append({"kind": "model", "name": str(rh["source_id"].values[k]),
                         "member_id": str(rh["member_id"].values[k]), **_row(at[k], obs)})
        ens = results["rh_member_mean"]
        at = sample(ens, lat_b, lon_b, sites).values
        for k, name in enumerate(ens["model"].values):
            rows.append({"kind": "model", "name": str(name), "member_id": "ensemble",
                         **_row(at[k], obs)})
    if "obs_products" in results:
        at = sample(results["obs_products"], lat_b, lon_b, sites).values
        for k, name in enumerate(results["product"].values):
            rows.append({"kind": "product", "name": str(name), "member_id": "",
                         **_row(at[k], obs)})
    return pd.DataFrame(rows, columns=["kind", "name", "member_id", "n_sites", "rmse", "bias"])
