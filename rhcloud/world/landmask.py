"""Land fraction of grid cells from Earth's real coastline (the 1 km mask of
``global-land-mask``), by sampling each cell at points equally spaced in area."""

from __future__ import annotations

import numpy as np
import xarray as xr


def is_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Boolean land mask at points (degrees north, degrees east in any convention)."""
    from global_land_mask import globe  # import costs ~4 s: only when a world is generated

    lon = (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0
    lat = np.clip(np.asarray(lat, dtype=float), -89.999, 89.999)
    return globe.is_land(lat, lon)


def land_fraction(grid: xr.Dataset, nsub: int = 6) -> np.ndarray:
    """Fraction (0..1) of each cell's area that is land, from ``nsub × nsub`` samples per
    cell placed at equal-area positions (uniform in sin-latitude and longitude)."""
    lat_b = np.radians(np.asarray(grid["lat_bnds"], dtype=float))
    lon_b = np.asarray(grid["lon_bnds"], dtype=float)
    u = (np.arange(nsub) + 0.5) / nsub
    s0, s1 = np.sin(lat_b[:, 0]), np.sin(lat_b[:, 1])
    sub_lat = np.degrees(np.arcsin(s0[:, None] + (s1 - s0)[:, None] * u))  # (nlat, nsub)
    sub_lon = lon_b[:, 0][:, None] + (lon_b[:, 1] - lon_b[:, 0])[:, None] * u  # (nlon, nsub)
    la = sub_lat[:, None, :, None]
    lo = sub_lon[None, :, None, :]
    la, lo = np.broadcast_arrays(la, lo)
    mask = is_land(la.ravel(), lo.ravel()).reshape(la.shape)
    return mask.mean(axis=(2, 3))
