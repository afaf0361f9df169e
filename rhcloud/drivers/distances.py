"""Pairwise distances between grid cells for the spatial correlation structures.

Three metrics, all returned as dense ``(n, n)`` float64 matrices in C order:

- ``great_circle_km``: distance along the sphere (km), radius :data:`EARTH_RADIUS_KM`;
- ``chordal_km``: straight-line distance through the sphere (km), ``2 R sin(gc / 2R)``;
  it is a Euclidean distance in R^3, so every correlation function valid in three
  dimensions (exponential, gaussian, spherical, rational quadratic) gives a
  positive-definite matrix on it;
- ``lonlat_euclidean``: ``sqrt(dlon^2 + dlat^2)`` in degrees, exactly what
  ``nlme::corSpatial(form = ~ lon + lat)`` uses (for parity with R).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), km."""


def _unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lam = np.deg2rad(np.asarray(lon, dtype=np.float64))
    phi = np.deg2rad(np.asarray(lat, dtype=np.float64))
    cphi = np.cos(phi)
    return np.column_stack([cphi * np.cos(lam), cphi * np.sin(lam), np.sin(phi)])


def chordal_km(lon: np.ndarray, lat: np.ndarray, radius_km: float = EARTH_RADIUS_KM) -> np.ndarray:
    """Chordal (3-D straight-line) distances in km between points given in degrees."""
    u = _unit_vectors(lon, lat)
    d = cdist(u, u)
    d *= radius_km
    np.fill_diagonal(d, 0.0)
    return d


def chordal_to_great_circle(d_chord: np.ndarray, radius_km: float = EARTH_RADIUS_KM,
                            out: np.ndarray | None = None) -> np.ndarray:
    """Convert chordal km to great-circle km: ``2 R arcsin(c / 2R)`` (in place if ``out``)."""
    out = np.divide(d_chord, 2.0 * radius_km, out=out)
    np.clip(out, 0.0, 1.0, out=out)
    np.arcsin(out, out=out)
    out *= 2.0 * radius_km
    return out


def great_circle_km(lon: np.ndarray, lat: np.ndarray,
                    radius_km: float = EARTH_RADIUS_KM) -> np.ndarray:
    """Great-circle distances in km between points given in degrees (lon, lat)."""
    return chordal_to_great_circle(chordal_km(lon, lat, radius_km), radius_km)


def lonlat_euclidean(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Euclidean distance on (lon, lat) in degrees, as ``nlme`` with ``form = ~ lon + lat``."""
    xy = np.column_stack([np.asarray(lon, np.float64), np.asarray(lat, np.float64)])
    return cdist(xy, xy)


def pairwise(lon: np.ndarray, lat: np.ndarray, metric: str) -> np.ndarray:
    """Distance matrix for ``metric`` in {"great-circle", "chordal", "lonlat"}."""
    if metric == "great-circle":
        return great_circle_km(lon, lat)
    if metric == "chordal":
        return chordal_km(lon, lat)
    if metric == "lonlat":
        return lonlat_euclidean(lon, lat)
    raise ValueError(f"unknown distance metric {metric!r}")
