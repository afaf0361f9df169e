"""Ingest: open CMIP6 Zarr stores lazily (local, ``gs://``, ``s3://`` through fsspec) and
harmonize them to the project's conventions: 1-D ``lat`` ascending, ``lon`` in [0, 360),
``lat_bnds``/``lon_bnds`` present and valid, ``time`` decoded with cftime in the dataset's
own calendar. Errors name the store (``zstore``) and what is wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from rhcloud import grids


class DatasetError(ValueError):
    """A dataset that cannot be used; ``str()`` names the store and what is wrong."""

    def __init__(self, zstore: str, reason: str):
        super().__init__(f"{zstore}: {reason}")
        self.zstore = zstore
        self.reason = reason


_LAT_NAMES = ("lat", "latitude", "nav_lat", "y")
_LON_NAMES = ("lon", "longitude", "nav_lon", "x")


# gcsfs sets no timeout by default (a stalled request hangs its thread for ever), and a
# total timeout raises a TimeoutError it does not retry; a socket-read timeout it retries.
GCS_READ_TIMEOUT_S = 60.0
GCS_CONNECT_TIMEOUT_S = 30.0


def _gcs_timeout(value: Any):
    """``requests_timeout`` (seconds, or None for the default) as a per-read timeout."""
    import aiohttp

    if isinstance(value, aiohttp.ClientTimeout):
        return value
    read = GCS_READ_TIMEOUT_S if value is None else float(value)
    return aiohttp.ClientTimeout(total=None, sock_connect=min(read, GCS_CONNECT_TIMEOUT_S),
                                 sock_read=read)


def storage_options_for(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The options to pass to fsspec for ``url``: none for local paths and ``file://``; for
    ``gs://`` a retried per-read timeout (``requests_timeout`` in seconds, default 60)."""
    if "://" not in url or url.startswith("file://"):
        return None
    opts = dict(storage_options or {})
    if url.startswith(("gs://", "gcs://")):
        opts["requests_timeout"] = _gcs_timeout(opts.get("requests_timeout"))
    return opts or None


def open_store(zstore: str, storage_options: dict[str, Any] | None = None,
               chunks: dict[str, int] | None = None) -> xr.Dataset:
    """Open a Zarr store lazily with Dask, keeping the store's own chunks (``chunks={}``)
    unless others are given; times decoded with cftime in every calendar."""
    # a file:// URL opened as a plain path: zarr's LocalStore, not an fsspec wrapper (which
    # fsspec caches per store, for the life of the process)
    try:
        ds = xr.open_zarr(
            zstore.removeprefix("file://"),
            storage_options=storage_options_for(zstore, storage_options),
            consolidated=None,
            chunks={} if chunks is None else chunks,
            decode_times=xr.coders.CFDatetimeCoder(use_cftime=True),
        )
    except Exception as exc:  # any failure to open is this dataset's failure, named
        raise DatasetError(zstore, f"cannot open store ({type(exc).__name__}: {exc})") from exc
    for dim in ("dcpp_init_year", "member_id"):
        if dim in ds.dims and ds.sizes[dim] == 1:
            ds = ds.squeeze(dim, drop=True)
    return ds


def _rename_lat_lon(ds: xr.Dataset | xr.DataArray, zstore: str):
    lat = next((n for n in _LAT_NAMES if n in ds.coords or n in ds.dims), None)
    lon = next((n for n in _LON_NAMES if n in ds.coords or n in ds.dims), None)
    if lat is None or lon is None:
        raise DatasetError(zstore, f"no latitude/longitude coordinates (dims {tuple(ds.dims)})")
    if ds[lat].ndim != 1 or ds[lon].ndim != 1:
        raise DatasetError(zstore, "curvilinear grids (2-D lat/lon) are not supported")
    rename = {k: v for k, v in ((lat, "lat"), (lon, "lon")) if k != v}
    return ds.rename(rename) if rename else ds


def _bounds_of(ds: xr.Dataset, coord: str) -> np.ndarray | None:
    name = ds[coord].attrs.get("bounds")
    for cand in (name, f"{coord}_bnds", f"{coord}_bounds"):
        if cand and cand in ds.variables and ds[cand].ndim == 2:
            return np.asarray(ds[cand].values, dtype=float)
    return None


def harmonize_grid(field: xr.DataArray, source: xr.Dataset, zstore: str) -> xr.Dataset:
    """Put a 2-D (lat, lon) field on the project's conventions.

    Returns a Dataset with the field as ``flux`` plus valid ``lat_bnds``/``lon_bnds``;
    ``attrs['grid_note']`` records bounds rebuilt from centres or longitudes shifted.
    """
    source = _rename_lat_lon(source, zstore)
    field = _rename_lat_lon(field, zstore)
    grid = grids.normalize_grid(source["lat"].values, source["lon"].values,
                                _bounds_of(source, "lat"), _bounds_of(source, "lon"),
                                name=zstore)
    lon = np.asarray(field["lon"], dtype=float)
    field = field.assign_coords(lon=lon - np.floor(lon / 360.0) * 360.0)
    field = field.sortby("lat").sortby("lon")
    field = field.assign_coords(lat=grid["lat"].values, lon=grid["lon"].values)
    out = xr.Dataset({"flux": field, "lat_bnds": grid["lat_bnds"], "lon_bnds": grid["lon_bnds"]})
    out["lat"].attrs = dict(grid["lat"].attrs)
    out["lon"].attrs = dict(grid["lon"].attrs)
    notes = []
    if "bounds_note" in grid.attrs:
        notes.append(grid.attrs["bounds_note"])
    if np.any(lon < 0):
        notes.append("longitudes shifted from [-180, 180) to [0, 360)")
    out.attrs["grid_note"] = "; ".join(notes)
    return out


def load_fx(zstore: str, variable: str, storage_options: dict[str, Any] | None,
            grid: xr.Dataset) -> xr.DataArray:
    """Read an fx variable (``areacella`` m², ``sftlf`` %) onto ``grid``'s (lat, lon) order.

    ``sftlf`` is returned as a fraction (0..1). Raises DatasetError when it does not fit."""
    ds = open_store(zstore, storage_options)
    if variable not in ds:
        raise DatasetError(zstore, f"no variable {variable!r} (has {sorted(ds.data_vars)})")
    da = _rename_lat_lon(ds[variable], zstore)
    lon = np.asarray(da["lon"], dtype=float)
    da = da.assign_coords(lon=lon - np.floor(lon / 360.0) * 360.0).sortby("lat").sortby("lon")
    if da.shape != (grid.sizes["lat"], grid.sizes["lon"]) or not (
        np.allclose(da["lat"], grid["lat"], atol=1e-4) and np.allclose(da["lon"], grid["lon"],
                                                                       atol=1e-4)):
        raise DatasetError(zstore, f"{variable} grid {da.shape} does not match the data's grid "
                                   f"{(grid.sizes['lat'], grid.sizes['lon'])}")
    values = np.asarray(da.values, dtype=float)
    if variable == "sftlf":
        units = str(ds[variable].attrs.get("units", "%")).strip()
        if units in ("%", "percent"):
            values = values / 100.0
        elif units not in ("1", "", "fraction"):
            raise DatasetError(zstore, f"sftlf units {units!r}: expected '%' or '1'")
        values = np.where(np.isfinite(values), np.clip(values, 0.0, 1.0), 0.0)
    return xr.DataArray(values, dims=("lat", "lon"),
                        coords={"lat": grid["lat"].values, "lon": grid["lon"].values},
                        attrs={"units": "1" if variable == "sftlf" else "m2", "zstore": zstore})
