"""Latitude/longitude conventions: the names a file may give its axes, and the longitude wrap
to [0, 360). Every reader of model stores and observation files goes through these."""

from __future__ import annotations

import numpy as np
import xarray as xr

LAT_NAMES = ("lat", "latitude", "nav_lat", "y")
LON_NAMES = ("lon", "longitude", "nav_lon", "x")


def find_lat_lon(obj: xr.Dataset | xr.DataArray, *,
                 dims_only: bool = False) -> tuple[str | None, str | None]:
    """Names of the latitude and longitude axes of ``obj`` (None where absent): the first of
    :data:`LAT_NAMES` / :data:`LON_NAMES` that is a dimension (or, unless ``dims_only``, a
    coordinate)."""
    def first(names: tuple[str, ...]) -> str | None:
        return next((n for n in names if n in obj.dims or (not dims_only and n in obj.coords)),
                    None)

    return first(LAT_NAMES), first(LON_NAMES)


def wrap_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes (degrees east) moved into [0, 360)."""
    lon = np.asarray(lon, dtype=float)
    return lon - lon_shift(lon)


def lon_shift(lon: np.ndarray) -> np.ndarray:
    """What :func:`wrap_lon` subtracts from each longitude (a multiple of 360°)."""
    return np.floor(np.asarray(lon, dtype=float) / 360.0) * 360.0


def wrapped_sorted(field: xr.DataArray) -> xr.DataArray:
    """A field with ``lat``/``lon`` axes, longitudes wrapped to [0, 360) and both axes sorted
    ascending."""
    field = field.assign_coords(lon=wrap_lon(field["lon"]))
    return field.sortby("lat").sortby("lon")


def sorted_on_grid(field: xr.DataArray, grid: xr.Dataset) -> xr.DataArray:
    """:func:`wrapped_sorted`, with the coordinates of ``grid`` (built by
    ``rhcloud.core.grids.normalize_grid`` from the same axes)."""
    return wrapped_sorted(field).assign_coords(lat=grid["lat"].values, lon=grid["lon"].values)
