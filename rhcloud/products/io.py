"""I/O edge of the product readers: opening local or object-store files, lazy chunked
GeoTIFF access, CRS checks, area-weighted block averaging on the workers, time means, and
assembling the readers' common output.

Every reader returns an ``xr.Dataset`` on the file's own grid with 1-D ascending ``lat``,
``lon`` in [0, 360), ``lat_bnds``/``lon_bnds`` (n, 2), ``landfrac`` (0..1, where the product
has valid data) and either ``flux`` (g C m-2 yr-1), ``value`` (a covariate, units in its
attrs) or ``classes`` (categorical codes, float with NaN where none). Data stay Dask-backed
where the file was read lazily; nothing here computes a whole raster.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dask.array as dsa
import fsspec
import numpy as np
import xarray as xr

from rhcloud.core.coords import find_lat_lon, wrap_lon
from rhcloud.core.grids import normalize_grid
from rhcloud.core.timeaxis import month_lengths, time_bounds
from rhcloud.products.units import ProductError
from rhcloud.storage.paths import is_remote


def open_netcdf(path: str | Path, storage_options: dict | None = None,
                chunks: dict | None = None) -> xr.Dataset:
    """Open a NetCDF file (local or fsspec URL) lazily, times decoded with cftime. Every
    fill value the file declares (``_FillValue``, ``missing_value``) reads as missing."""
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with warnings.catch_warnings():
        # several declared fill values are all decoded to NaN, as intended: xarray's
        # warning about them would only alarm the user
        warnings.filterwarnings("ignore", message=".*multiple fill values",
                                category=xr.SerializationWarning)
        try:
            if is_remote(path):
                f = fsspec.open(str(path), mode="rb", **(storage_options or {})).open()
                try:
                    return xr.open_dataset(f, engine="h5netcdf", chunks=chunks or {},
                                           decode_times=coder)
                except RuntimeError as err:
                    if "H5DS" not in str(err):
                        raise
                    f.seek(0)
                    with f:  # the bytes of the file already open, not a second download
                        return _open_in_memory(str(path), f.read(), coder)
            return xr.open_dataset(path, chunks=chunks or {}, decode_times=coder)
        except FileNotFoundError:
            raise ProductError(f"{path}: file not found") from None
        except (OSError, ValueError) as err:
            raise ProductError(f"{path}: cannot open as NetCDF ({type(err).__name__}: "
                               f"{err})") from err


def _open_in_memory(path: str, data: bytes, coder: xr.coders.CFDatetimeCoder) -> xr.Dataset:
    """A file's bytes (``data``, of ``path``) read by netCDF4 from memory, loaded. For when h5py cannot read HDF5
    dimension scales: with two HDF5 libraries in one process (the pip wheels of h5py 3.15
    and netCDF4 1.7.3 each bundle one; HDF5 issue 6268) every ``H5DSget_num_scales`` fails,
    so h5netcdf cannot open any netCDF-4 file, while netCDF4 reads it. Loaded at once
    because an in-memory netCDF4 dataset cannot travel to the workers."""
    import netCDF4

    # the name only labels the dataset; a URL there would send netCDF4 to OPeNDAP
    nc = netCDF4.Dataset(path.rsplit("/", 1)[-1], mode="r", memory=data)
    with xr.open_dataset(xr.backends.NetCDF4DataStore(nc), decode_times=coder) as ds:
        return ds.load()


GDAL_PREFIXES = {"gs://": "/vsigs/", "gcs://": "/vsigs/", "s3://": "/vsis3/",
                 "az://": "/vsiaz/", "abfs://": "/vsiaz/"}


def gdal_path(path: str | Path) -> str:
    """The GDAL path of a raster URL: ``gs://b/k`` → ``/vsigs/b/k``, ``s3://`` →
    ``/vsis3/``, ``http(s)://`` → ``/vsicurl/...``, ``file://`` → local path. GeoTIFFs are
    read by GDAL itself (range requests per tile), not through fsspec: GDAL's Python-opener
    bridge does not close cleanly under Dask here."""
    s = str(path)
    if s.startswith("file://"):
        return s[len("file://"):]
    for prefix, vsi in GDAL_PREFIXES.items():
        if s.startswith(prefix):
            return vsi + s[len(prefix):]
    if s.startswith(("http://", "https://")):
        return "/vsicurl/" + s
    if s.startswith("memory://"):
        raise ProductError(f"{path}: GeoTIFFs are read by GDAL, which cannot see fsspec's "
                           "memory filesystem; use a local path, gs://, s3:// or https://")
    return s


def gdal_env(storage_options: dict | None) -> dict[str, str]:
    """GDAL configuration for the fsspec ``storage_options`` that have a GDAL equivalent
    (anonymous access, S3 endpoint). Credentials otherwise come from GDAL's usual
    environment variables (GOOGLE_APPLICATION_CREDENTIALS, AWS_*), which Dask workers
    inherit."""
    so = storage_options or {}
    env: dict[str, str] = {}
    if so.get("token") == "anon":
        env["GS_NO_SIGN_REQUEST"] = "YES"
    if so.get("anon"):
        env["AWS_NO_SIGN_REQUEST"] = "YES"
    endpoint = so.get("endpoint_url") or (so.get("client_kwargs") or {}).get("endpoint_url")
    if endpoint:
        env["AWS_S3_ENDPOINT"] = str(endpoint).split("://", 1)[-1]
        env["AWS_HTTPS"] = "YES" if str(endpoint).startswith("https") else "NO"
        env["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return env


def open_geotiff(path: str | Path, storage_options: dict | None = None,
                 chunks: dict | None = None) -> xr.DataArray:
    """Open a GeoTIFF lazily with rioxarray: Dask-backed with ``chunks`` (a dict of
    band/y/x sizes), else lazily indexed without Dask (metadata only until sliced); NaN
    where the file's nodata is. Object-store URLs are mapped to GDAL's virtual file
    systems (:func:`gdal_path`)."""
    import rasterio
    import rioxarray

    gpath = gdal_path(path)
    if not is_remote(path) and not Path(gpath).exists():
        raise ProductError(f"{path}: file not found")
    try:
        with rasterio.Env(**gdal_env(storage_options)):
            return rioxarray.open_rasterio(gpath, masked=True, lock=False, chunks=chunks)
    except Exception as err:  # rasterio.errors.RasterioIOError and friends
        raise ProductError(f"{path}: cannot open as GeoTIFF ({type(err).__name__}: {err})") \
            from err


def check_crs(da: xr.DataArray, path: str | Path, *, reproject: bool = False) -> xr.DataArray:
    """Return ``da`` in EPSG:4326. A raster in another CRS is refused with a clear error,
    or reprojected (``reproject=True``; nearest-neighbour for integer rasters, bilinear
    otherwise — not conservative, and it loads the raster: meant for small files)."""
    crs = da.rio.crs
    if crs is None:
        raise ProductError(f"{path}: GeoTIFF has no CRS; expected EPSG:4326 (lat/lon)")
    if crs.to_epsg() == 4326:
        return da
    if not reproject:
        raise ProductError(f"{path}: GeoTIFF CRS is {crs.to_string()!r}, expected EPSG:4326; "
                           "reproject the file (gdalwarp -t_srs EPSG:4326) or set "
                           "'reproject: true' in its entry")
    from rasterio.enums import Resampling

    method = Resampling.nearest if np.issubdtype(da.dtype, np.integer) or \
        da.attrs.get("categorical") else Resampling.bilinear
    out = da.rio.reproject("EPSG:4326", resampling=method)
    return out.assign_attrs(reprojected_from=crs.to_string())


def raster_band(da: xr.DataArray, band: int, path: str | Path) -> xr.DataArray:
    """One band of a (band, y, x) raster as a (y, x) DataArray."""
    if "band" in da.dims:
        bands = list(np.asarray(da["band"]))
        if band not in bands:
            raise ProductError(f"{path}: band {band} not in the file (bands {bands})")
        da = da.sel(band=band, drop=True)
    return da


def pixel_edges(centres: np.ndarray, path: str | Path, what: str) -> np.ndarray:
    """Edges (n+1) of a regular 1-D pixel axis from its centres (any direction)."""
    c = np.asarray(centres, dtype=float)
    if c.size < 2:
        raise ProductError(f"{path}: {what} axis has fewer than 2 pixels")
    step = np.diff(c)
    if not np.allclose(step, step[0], rtol=1e-6, atol=1e-9):
        raise ProductError(f"{path}: {what} pixels are not regularly spaced")
    return np.concatenate([c - step[0] / 2, [c[-1] + step[0] / 2]])


def block_average(field: xr.DataArray, factor: int, path: str | Path,
                  ) -> tuple[xr.DataArray, xr.DataArray, np.ndarray, np.ndarray]:
    """Area-weighted block average of a lat/lon raster ``field`` (dims ``y``, ``x``,
    pixel centres in degrees, NaN where invalid) by ``factor`` × ``factor`` pixels, lazily
    (each Dask chunk reduces on its worker: chunks must be multiples of ``factor``).

    Pixel weights are their areas on the sphere, Δsin φ · Δλ. Returns the block mean of the
    valid pixels, the valid-area fraction of each block (0..1), and the blocks' latitude and
    longitude edges, so that Σ mean·fraction·area over blocks equals Σ value·area over valid
    pixels: the land total is conserved exactly. Partial blocks at the edges are kept (their
    edges are those of the pixels they hold)."""
    y_edges = pixel_edges(field["y"].values, path, "y")
    x_edges = pixel_edges(field["x"].values, path, "x")
    wy = np.abs(np.diff(np.sin(np.radians(np.clip(y_edges, -90.0, 90.0)))))
    wx = np.abs(np.radians(np.diff(x_edges)))
    wy_da = xr.DataArray(wy, dims="y")
    wx_da = xr.DataArray(wx, dims="x")
    valid = field.notnull()
    weight = valid * wy_da * wx_da
    num = (field.fillna(0.0) * weight).coarsen(y=factor, x=factor, boundary="pad").sum()
    den = weight.coarsen(y=factor, x=factor, boundary="pad").sum()
    ny, nx = wy.size, wx.size
    by = np.add.reduceat(wy, np.arange(0, ny, factor))
    bx = np.add.reduceat(wx, np.arange(0, nx, factor))
    # the blocks' areas as a lazy outer product: a NumPy (ny, nx) array would travel inside
    # the graph (2 MiB at 0.5°); the product is the same multiplication as np.outer's
    area = (xr.DataArray(dsa.from_array(by, chunks=-1), dims="y")
            * xr.DataArray(dsa.from_array(bx, chunks=-1), dims="x"))
    num = num.drop_vars(["y", "x"], errors="ignore")
    den = den.drop_vars(["y", "x"], errors="ignore")
    mean = (num / den.where(den > 0)).astype(np.float64)
    frac = (den / area).clip(0.0, 1.0)
    ye = np.append(y_edges[:-1:factor], y_edges[-1])
    xe = np.append(x_edges[:-1:factor], x_edges[-1])
    return mean, frac, ye, xe


def chunks_for(shape: tuple[int, int], factor: int, target: int = 2048) -> dict[str, int]:
    """Dask chunk sizes for a (y, x) raster: about ``target`` pixels a side, multiples of
    the block-average ``factor``, so every block lies within one chunk."""
    size = max(factor, (target // factor) * factor)
    return {"y": min(size, shape[0]), "x": min(size, shape[1])}


def on_latlon(da: xr.DataArray, lat_edges: np.ndarray, lon_edges: np.ndarray,
              name: str) -> tuple[xr.Dataset, np.ndarray, np.ndarray]:
    """Grid (ascending lat, lon in [0, 360)) for a (y, x) field with the given cell edges,
    and the index orders that put the field on it."""
    lat_b = np.stack([lat_edges[:-1], lat_edges[1:]], axis=1)
    lon_b = np.stack([lon_edges[:-1], lon_edges[1:]], axis=1)
    lat = lat_b.mean(axis=1)
    lon = lon_b.mean(axis=1)
    grid = normalize_grid(lat, lon, lat_b, lon_b, name=name)
    lat_order = np.argsort(lat)
    lon_order = np.argsort(wrap_lon(lon))
    return grid, lat_order, lon_order


def to_grid(da: xr.DataArray, grid: xr.Dataset, lat_order: np.ndarray,
            lon_order: np.ndarray, ydim: str = "y", xdim: str = "x") -> xr.DataArray:
    """``da`` (dims ydim, xdim) reordered onto ``grid``'s (lat, lon)."""
    out = da.isel({ydim: lat_order, xdim: lon_order})
    out = out.drop_vars([c for c in out.coords if c not in ()], errors="ignore")
    out = out.rename({ydim: "lat", xdim: "lon"}) if ydim != "lat" else out
    return out.assign_coords(lat=grid["lat"].values, lon=grid["lon"].values)


def find_latlon(ds: xr.Dataset | xr.DataArray, path: str | Path) -> tuple[str, str]:
    """Names of the latitude and longitude dimensions of a NetCDF variable."""
    lat, lon = find_lat_lon(ds, dims_only=True)
    if lat is None or lon is None:
        raise ProductError(f"{path}: no latitude/longitude dimensions found (dims "
                           f"{tuple(ds.dims)}); expected 1-D 'lat'/'lon'")
    return lat, lon


def netcdf_grid(ds: xr.Dataset, var: str, path: str | Path,
                name: str) -> tuple[xr.DataArray, xr.Dataset]:
    """``ds[var]`` on a normalised grid (ascending lat, lon in [0, 360), bounds from the
    file when valid, else rebuilt from centres)."""
    da = ds[var]
    lat_name, lon_name = find_latlon(da, path)
    lat = np.asarray(ds[lat_name], dtype=float)
    lon = np.asarray(ds[lon_name], dtype=float)

    def _bounds(coord: str) -> np.ndarray | None:
        b = ds[coord].attrs.get("bounds")
        return np.asarray(ds[b], dtype=float) if b and b in ds else None

    grid = normalize_grid(lat, lon, _bounds(lat_name), _bounds(lon_name), name=name)
    lat_order = np.argsort(lat)
    lon_order = np.argsort(wrap_lon(lon))
    da = da.isel({lat_name: lat_order, lon_name: lon_order})
    da = da.drop_vars([c for c in (lat_name, lon_name) if c in da.coords])
    da = da.rename({lat_name: "lat", lon_name: "lon"})
    return da.assign_coords(lat=grid["lat"].values, lon=grid["lon"].values), grid


def month_weights(time: xr.DataArray, ds: xr.Dataset) -> xr.DataArray:
    """Length of each time step in days: from the time bounds when the file has them, else
    the calendar's month length (monthly data)."""
    bounds = time_bounds(ds, time.name)
    days = month_lengths(time, None if bounds is None else bounds.load())
    return xr.DataArray(days, dims=time.dims, coords={time.name: time})


def time_steps_per_year(time: xr.DataArray, weights: xr.DataArray) -> float:
    """Number of time steps per year: 12 for monthly data, 1 for annual data."""
    mean_days = float(weights.mean())
    if 27.0 <= mean_days <= 32.0:
        return 12.0
    if 359.0 <= mean_days <= 367.0:
        return 1.0
    return 365.2425 / mean_days


def attrs_for(entry: dict, path: str | Path, citation: str, units: str, notes: str,
              **extra: Any) -> dict[str, Any]:
    return {"name": entry.get("name", ""), "path": str(path), "reader": entry.get("reader", ""),
            "citation": citation, "units": units, "notes": notes, **extra}


def assemble(kind: str, field: xr.DataArray, landfrac: xr.DataArray, grid: xr.Dataset,
             attrs: dict[str, Any], var_attrs: dict[str, Any]) -> xr.Dataset:
    """The readers' common output Dataset (see module docstring)."""
    name = {"flux": "flux", "value": "value", "categorical": "classes"}[kind]
    field = field.where(landfrac > 0)
    ds = xr.Dataset(
        {name: field.assign_attrs(var_attrs),
         "landfrac": landfrac.assign_attrs(units="1", long_name="fraction of the cell with "
                                           "valid product data (the product's land)"),
         "lat_bnds": grid["lat_bnds"], "lon_bnds": grid["lon_bnds"]},
        coords={"lat": grid["lat"], "lon": grid["lon"]},
        attrs={**attrs, "kind": kind, "grid_name": grid.attrs.get("grid_name", "")},
    )
    return ds
