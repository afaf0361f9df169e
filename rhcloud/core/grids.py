"""Rectilinear lat/lon grids: the CMIP6 models' published grids, regular grids, cell areas.

A grid is an ``xr.Dataset`` with 1-D ``lat`` (ascending, degrees north) and ``lon``
(degrees east, in [0, 360) unless built otherwise) plus ``lat_bnds``/``lon_bnds``
of shape (n, 2). Cell areas are exact on the sphere: R² Δλ (sin φ₂ − sin φ₁).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import xarray as xr

from rhcloud.core.coords import lon_shift

EARTH_RADIUS_M = 6_371_000.0
"""Sphere radius used for cell areas computed from bounds (m)."""


@dataclass(frozen=True)
class GridSpec:
    """How a model's published grid is built."""

    kind: str  # "gaussian" | "regular_poles" | "regular_offset"
    nlat: int
    nlon: int
    lon0: float = 0.0  # longitude of the first cell centre (degrees east)
    description: str = ""


MODEL_GRIDS: dict[str, GridSpec] = {
    "BCC-CSM2-MR": GridSpec("gaussian", 160, 320, description="T106 Gaussian"),
    "BCC-ESM1": GridSpec("gaussian", 64, 128, description="T42 Gaussian"),
    "CanESM5": GridSpec("gaussian", 64, 128, description="T63 Gaussian (64x128)"),
    "CESM2": GridSpec("regular_poles", 192, 288, description="0.9x1.25, poles included"),
    "CNRM-ESM2-1": GridSpec("gaussian", 128, 256, description="T127 Gaussian"),
    "E3SM-1-1-ECA": GridSpec("regular_offset", 180, 360, lon0=0.5, description="regular 1 deg"),
    "IPSL-CM6A-LR": GridSpec("regular_poles", 143, 144, description="1.27x2.5, poles included"),
    "MIROC-ES2L": GridSpec("gaussian", 64, 128, description="T42 Gaussian"),
    "MPI-ESM1-2-LR": GridSpec("gaussian", 96, 192, description="T63 Gaussian"),
    "NorCPM1": GridSpec("regular_poles", 96, 144, description="1.9x2.5"),
    "NorESM2-LM": GridSpec("regular_poles", 96, 144, description="1.9x2.5"),
    "SAM0-UNICON": GridSpec("regular_poles", 192, 288, description="0.9x1.25, poles included"),
    "UKESM1-0-LL": GridSpec("regular_offset", 144, 192, lon0=0.9375, description="N96 (offset)"),
}


def _grid_dataset(lat: np.ndarray, lat_bnds: np.ndarray, lon: np.ndarray,
                  lon_bnds: np.ndarray, name: str) -> xr.Dataset:
    ds = xr.Dataset(
        {
            "lat_bnds": (("lat", "bnds"), lat_bnds),
            "lon_bnds": (("lon", "bnds"), lon_bnds),
        },
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude",
                                 "bounds": "lat_bnds"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude",
                                 "bounds": "lon_bnds"}),
        },
        attrs={"grid_name": name},
    )
    return ds


def _regular_lons(nlon: int, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    dlon = 360.0 / nlon
    lon = lon0 + dlon * np.arange(nlon)
    return lon, np.stack([lon - dlon / 2, lon + dlon / 2], axis=1)


def gaussian_grid(nlat: int, nlon: int, lon0: float = 0.0, name: str | None = None) -> xr.Dataset:
    """Gaussian grid: latitudes at the Gauss–Legendre nodes, bounds where the cumulative
    quadrature weights put them (so each cell's sin-latitude width equals its weight)."""
    x, w = np.polynomial.legendre.leggauss(nlat)
    lat = np.degrees(np.arcsin(x))
    edges_sin = np.clip(np.concatenate([[-1.0], -1.0 + np.cumsum(w)]), -1.0, 1.0)
    edges_sin[-1] = 1.0
    edges = np.degrees(np.arcsin(edges_sin))
    lat_bnds = np.stack([edges[:-1], edges[1:]], axis=1)
    lon, lon_bnds = _regular_lons(nlon, lon0)
    return _grid_dataset(lat, lat_bnds, lon, lon_bnds, name or f"gaussian_{nlat}x{nlon}")


def regular_grid(nlat: int, nlon: int, *, poles: bool = False, lon0: float | None = None,
                 name: str | None = None) -> xr.Dataset:
    """Regular lat/lon grid. ``poles=True`` puts the first and last centres on the poles
    (half-width polar cells, as CESM2/IPSL/NorESM); otherwise centres are offset by half a cell."""
    if poles:
        lat = np.linspace(-90.0, 90.0, nlat)
        mid = (lat[:-1] + lat[1:]) / 2
        edges = np.concatenate([[-90.0], mid, [90.0]])
    else:
        dlat = 180.0 / nlat
        edges = np.linspace(-90.0, 90.0, nlat + 1)
        lat = -90.0 + dlat * (np.arange(nlat) + 0.5)
    lat_bnds = np.stack([edges[:-1], edges[1:]], axis=1)
    if lon0 is None:
        lon0 = 0.0 if poles else 180.0 / nlon
    lon, lon_bnds = _regular_lons(nlon, lon0)
    return _grid_dataset(lat, lat_bnds, lon, lon_bnds, name or f"regular_{nlat}x{nlon}")


def model_grid(source_id: str) -> xr.Dataset:
    """The published grid of a CMIP6 model of the paper, by ``source_id``."""
    try:
        spec = MODEL_GRIDS[source_id]
    except KeyError:
        raise ValueError(
            f"unknown grid name {source_id!r}: known model grids are {sorted(MODEL_GRIDS)}, "
            "or use 'regular:<degrees>' or a path to a NetCDF/Zarr file with lat/lon"
        ) from None
    if spec.kind == "gaussian":
        return gaussian_grid(spec.nlat, spec.nlon, spec.lon0, name=source_id)
    return regular_grid(spec.nlat, spec.nlon, poles=spec.kind == "regular_poles",
                        lon0=spec.lon0, name=source_id)


def cell_area(grid: xr.Dataset, radius: float = EARTH_RADIUS_M) -> xr.DataArray:
    """Cell areas (m²) from ``lat_bnds``/``lon_bnds`` on a sphere of ``radius`` (m)."""
    lat_b = np.radians(np.asarray(grid["lat_bnds"], dtype=float))
    lon_b = np.radians(np.asarray(grid["lon_bnds"], dtype=float))
    dsin = np.abs(np.sin(lat_b[:, 1]) - np.sin(lat_b[:, 0]))
    dlon = np.abs(lon_b[:, 1] - lon_b[:, 0])
    area = radius**2 * np.outer(dsin, dlon)
    return xr.DataArray(
        area, dims=("lat", "lon"), coords={"lat": grid["lat"], "lon": grid["lon"]},
        name="cell_area",
        attrs={"units": "m2", "long_name": "cell area from bounds on the sphere",
               "radius_m": radius},
    )


def bounds_from_centres(centres: np.ndarray, *, lat: bool) -> np.ndarray:
    """Cell bounds (n, 2) at midpoints between centres, outer edges mirrored
    (latitude edges clipped to ±90)."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        half = 0.5 if lat else 180.0
        edges = np.array([c[0] - half, c[0] + half])
    else:
        mid = (c[:-1] + c[1:]) / 2
        edges = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    if lat:
        edges = np.clip(edges, -90.0, 90.0)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def bounds_valid(bnds: np.ndarray, centres: np.ndarray) -> bool:
    """True when bounds are finite, contiguous, non-overlapping and contain their centres."""
    b = np.sort(np.asarray(bnds, dtype=float), axis=1)
    c = np.asarray(centres, dtype=float)
    if b.shape != (c.size, 2) or not np.all(np.isfinite(b)):
        return False
    if np.any(b[:, 1] <= b[:, 0]):
        return False
    if np.any(c < b[:, 0] - 1e-9) or np.any(c > b[:, 1] + 1e-9):
        return False
    order = np.argsort(c)
    return bool(np.allclose(b[order][1:, 0], b[order][:-1, 1], atol=1e-6))


_REGULAR = re.compile(r"^regular:(?P<deg>[0-9.]+)$")


def named_grid(spec: str) -> xr.Dataset | None:
    """The grid a name stands for: a model of :data:`MODEL_GRIDS` or ``regular:<degrees>``;
    None for anything else (a file path is read by ``rhcloud.stages.regrid.reference_grid``)."""
    m = _REGULAR.match(spec)
    if m:
        deg = float(m["deg"])
        nlat, nlon = round(180 / deg), round(360 / deg)
        if not np.isclose(nlat * deg, 180) or not np.isclose(nlon * deg, 360):
            raise ValueError(f"reference grid {spec!r}: {deg} degrees does not divide 180 and 360")
        return regular_grid(nlat, nlon, name=spec)
    if spec in MODEL_GRIDS:
        return model_grid(spec)
    return None


def normalize_grid(lat: np.ndarray, lon: np.ndarray, lat_bnds: np.ndarray | None,
                   lon_bnds: np.ndarray | None, name: str = "grid") -> xr.Dataset:
    """Build a grid with ascending latitude and longitudes in [0, 360), validating bounds
    and rebuilding them from centres when missing or invalid (noted in attrs)."""
    notes = []
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if lat_bnds is None or not bounds_valid(lat_bnds, lat):
        notes.append("lat bounds missing or invalid: rebuilt from centres")
        lat_bnds = bounds_from_centres(np.sort(lat), lat=True)[np.argsort(np.argsort(lat))]
    if lon_bnds is None or not bounds_valid(lon_bnds, lon):
        notes.append("lon bounds missing or invalid: rebuilt from centres")
        lon_bnds = bounds_from_centres(np.sort(lon), lat=False)[np.argsort(np.argsort(lon))]
    lat_bnds = np.sort(np.asarray(lat_bnds, dtype=float), axis=1)
    lon_bnds = np.sort(np.asarray(lon_bnds, dtype=float), axis=1)
    shift = lon_shift(lon)
    lon = lon - shift
    lon_bnds = lon_bnds - shift[:, None]
    lat_order = np.argsort(lat)
    lon_order = np.argsort(lon)
    ds = _grid_dataset(lat[lat_order], lat_bnds[lat_order], lon[lon_order], lon_bnds[lon_order],
                       name)
    if notes:
        ds.attrs["bounds_note"] = "; ".join(notes)
    return ds


def cdo_grid_text(grid: xr.Dataset) -> str:
    """A CDO grid description (``lonlat`` with explicit bounds) of ``grid``, for CDO's
    remapping operators (the paper's tool chain, our reference)."""
    def fmt(a) -> str:
        return " ".join(f"{v:.17g}" for v in np.asarray(a).ravel())

    return "\n".join([
        "gridtype = lonlat", f"xsize = {grid.sizes['lon']}", f"ysize = {grid.sizes['lat']}",
        f"xvals = {fmt(grid.lon)}", f"xbounds = {fmt(grid.lon_bnds)}",
        f"yvals = {fmt(grid.lat)}", f"ybounds = {fmt(grid.lat_bnds)}", ""])
