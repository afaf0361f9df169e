"""Land and land ice of grid cells from Earth's real coastline (the 1 km mask of
``global-land-mask``), by sampling each cell at points equally spaced in area.

Used by the virtual world (its ``sftlf``, its products' land) and by the run: a product or a
model that carries no land fraction gets :func:`land_fraction` on its own grid, and a model
without ``sftgif`` gets :func:`ice_sheet_fraction` to tell the ice-sheet land it leaves
missing from a broken store.

The land-ice region (no ``sftgif``): Antarctica, every land point south of 60° S, and
Greenland, the land inside :data:`GREENLAND` (a 15-vertex lon/lat polygon around the island,
clear of Ellesmere and Baffin Islands). Ice-free coastal strips of Greenland count as ice
sheet: the rule is about the land a model is allowed to leave missing, and a model masks
"most of Greenland", coast included.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

ANTARCTICA_MAX_LAT = -60.0

GREENLAND: tuple[tuple[float, float], ...] = (
    # (lon °E, lat °N), clockwise from Cape Farewell
    (-44.0, 59.0), (-53.0, 63.5), (-56.5, 69.0), (-59.0, 75.5), (-73.5, 77.8),
    (-67.0, 80.3), (-61.5, 81.9), (-45.0, 83.9), (-20.0, 83.8), (-10.0, 81.5),
    (-16.0, 76.0), (-20.0, 70.0), (-29.0, 67.5), (-38.0, 64.5), (-44.0, 59.0),
)


def is_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Boolean land mask at points (degrees north, degrees east in any convention)."""
    from global_land_mask import globe  # import costs ~4 s: only when a mask is needed

    lon = (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0
    lat = np.clip(np.asarray(lat, dtype=float), -89.999, 89.999)
    return globe.is_land(lat, lon)


def in_ice_region(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points (degrees) inside the land-ice region: south of 60° S or inside
    :data:`GREENLAND` (land or not: combine with :func:`is_land`)."""
    from matplotlib.path import Path

    lat = np.asarray(lat, dtype=float)
    lon = (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0
    points = np.stack([lon.ravel(), lat.ravel()], axis=1)
    greenland = Path(np.asarray(GREENLAND)).contains_points(points).reshape(lat.shape)
    return (lat < ANTARCTICA_MAX_LAT) | greenland


def _sample_axes(grid: xr.Dataset, nsub: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes (nlat, nsub) and longitudes (nlon, nsub) of ``nsub`` samples per cell along
    each axis, at equal-area positions (uniform in sin-latitude and in longitude)."""
    lat_b = np.radians(np.asarray(grid["lat_bnds"], dtype=float))
    lon_b = np.asarray(grid["lon_bnds"], dtype=float)
    u = (np.arange(nsub) + 0.5) / nsub
    s0, s1 = np.sin(lat_b[:, 0]), np.sin(lat_b[:, 1])
    sub_lat = np.degrees(np.arcsin(s0[:, None] + (s1 - s0)[:, None] * u))
    sub_lon = lon_b[:, 0][:, None] + (lon_b[:, 1] - lon_b[:, 0])[:, None] * u
    return sub_lat, sub_lon


def _subsamples(grid: xr.Dataset, nsub: int) -> tuple[np.ndarray, np.ndarray]:
    """(nlat, nlon, nsub, nsub) latitudes and longitudes of the samples of each cell."""
    sub_lat, sub_lon = _sample_axes(grid, nsub)
    la, lo = np.broadcast_arrays(sub_lat[:, None, :, None], sub_lon[None, :, None, :])
    return la, lo


def land_fraction(grid: xr.Dataset, nsub: int = 6) -> np.ndarray:
    """Fraction (0..1) of each cell's area that is land, from ``nsub × nsub`` samples per
    cell placed at equal-area positions (uniform in sin-latitude and longitude)."""
    sub_lat, sub_lon = _sample_axes(grid, nsub)
    nlat, nlon = sub_lat.shape[0], sub_lon.shape[0]
    # the samples form a product of a latitude and a longitude axis: the mask is looked up
    # on the two 1-D axes broadcast against each other, never on nlat·nlon·nsub² coordinate
    # pairs (a 0.25° product's 37 million samples: 0.45 s instead of 6.1 s)
    mask = is_land(sub_lat.reshape(-1, 1), sub_lon.reshape(1, -1))
    return mask.reshape(nlat, nsub, nlon, nsub).mean(axis=(1, 3))


def ice_sheet_fraction(grid: xr.Dataset, nsub: int = 6) -> np.ndarray:
    """Fraction (0..1) of each cell's area that is land inside the land-ice region
    (Antarctica and Greenland), sampled like :func:`land_fraction`."""
    la, lo = _subsamples(grid, nsub)
    flat_la, flat_lo = la.ravel(), lo.ravel()
    ice = is_land(flat_la, flat_lo) & in_ice_region(flat_la, flat_lo)
    return ice.reshape(la.shape).mean(axis=(2, 3))


def coastline_landfrac(grid: xr.Dataset, lazy: bool = False) -> xr.DataArray:
    """:func:`land_fraction` of ``grid`` as a DataArray on its (lat, lon), with the note
    that says where it came from. ``lazy``: a one-chunk Dask array whose task holds only
    the cell bounds, so the lookup runs where the array is computed (a worker) instead of
    travelling inside the graph (a 0.25° grid's fractions are 7.9 MiB)."""
    if lazy:
        import dask
        import dask.array as dsa

        bounds = grid[["lat_bnds", "lon_bnds"]].compute()
        shape = (grid.sizes["lat"], grid.sizes["lon"])
        values = dsa.from_delayed(dask.delayed(land_fraction, pure=True)(bounds), shape,
                                  dtype=np.float64)
    else:
        values = land_fraction(grid)
    return xr.DataArray(values, dims=("lat", "lon"),
                        coords={"lat": grid["lat"].values, "lon": grid["lon"].values},
                        attrs={"units": "1", "source": COASTLINE_SOURCE})


COASTLINE_SOURCE = "coastline (global-land-mask, 6x6 samples per cell)"
