"""Regions on the reference grid: fractional masks, regional land totals and regional
Table 1 metrics. Pure numpy/xarray (regionmask supplies the AR6 polygons it ships).

Two region sets, each with fractional overlap weights f_r(cell) in [0, 1]:

- ``band``: latitude bands, exact: the share of a cell's area (Δ sin φ) inside the band.
  tropics 23.5°S–23.5°N, boreal ≥ 50°N, temperate the rest (23.5°N–50°N and south of
  23.5°S), so the three bands partition the sphere.
- ``ar6``: the IPCC AR6 land regions (Iturbide et al. 2020; the 46 regions of
  ``regionmask.defined_regions.ar6.land``, read from the shapefile shipped in
  ``rhcloud/data`` so that nothing is downloaded). Each region's polygon is rasterised on a fine regular grid (``resolution``
  degrees, centres tested) and the fine cells' indicator is averaged onto the reference
  cells with the exact overlap weights of ``rhcloud.core.conservative``, so f_r is the
  share of the cell's area inside the polygon to the fine grid's resolution. Land outside
  every region is the ``remainder`` (f = 1 − Σ_r f_r), so regions + remainder = 1 in every
  cell and the regional totals add up to the global one to rounding.

Regional totals weight each cell by f_r: T_r = Σ flux·landfrac·area·f_r. Regional metrics
weight each land cell by f_r (a cell split between regions counts in each by its share):
n_cells = Σ f, bias = Σ f e / Σ f, RMSE = √(Σ f e² / Σ f), n_within_mad = Σ f·[|e| ≤ MAD],
R² the f-weighted squared Pearson correlation; with f = 1 (``global``) these are Table 1.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from rhcloud.core import grids
from rhcloud.core.conservative import G_PER_PG, _remap_sum, area_measure, overlap_weights

BANDS: dict[str, tuple[tuple[float, float], ...]] = {
    "tropics": ((-23.5, 23.5),),
    "temperate": ((-90.0, -23.5), (23.5, 50.0)),
    "boreal": ((50.0, 90.0),),
}
BAND_NAMES = {"tropics": "tropics (23.5°S–23.5°N)",
              "temperate": "temperate (23.5°N–50°N and south of 23.5°S)",
              "boreal": "boreal (north of 50°N)"}
REGION_SETS = ("ar6", "band")
REMAINDER = "remainder"
GLOBAL = "global"
AR6_FILE = Path(__file__).resolve().parents[1] / "data" / "IPCC-WGI-reference-regions-v4.zip"


@cache
def ar6_land_regions():
    """The AR6 land regions as ``regionmask.Regions`` (numbers, names, abbrevs), from the
    shipped shapefile."""
    import geopandas
    import regionmask

    df = geopandas.read_file(f"zip://{AR6_FILE}")
    land = df.loc[df["Type"].str.contains("Land")]
    return regionmask.from_geopandas(land, names="Name", abbrevs="Acronym",
                                     name="AR6 reference regions (land)",
                                     source="Iturbide et al., 2020 (ESSD)", overlap=False)


def band_fractions(grid: xr.Dataset) -> xr.DataArray:
    """(region, lat, lon): exact share of each cell's area inside each latitude band."""
    b = np.sort(np.asarray(grid["lat_bnds"], dtype=np.float64), axis=1)
    s_lo, s_hi = np.sin(np.radians(np.clip(b, -90, 90))).T
    width = s_hi - s_lo
    rows = []
    for intervals in BANDS.values():
        share = np.zeros_like(width)
        for lo, hi in intervals:
            a, c = np.sin(np.radians(lo)), np.sin(np.radians(hi))
            share += np.clip(np.minimum(s_hi, c) - np.maximum(s_lo, a), 0.0, None)
        rows.append(np.where(width > 0, share / np.where(width > 0, width, 1.0), 0.0))
    frac = np.broadcast_to(np.stack(rows)[:, :, None],
                           (len(BANDS), grid.sizes["lat"], grid.sizes["lon"]))
    return _fractions(frac.copy(), list(BANDS), "band", [BAND_NAMES[k] for k in BANDS],
                      grid)


def ar6_fractions(grid: xr.Dataset, resolution: float = 0.25) -> xr.DataArray:
    """(region, lat, lon): share of each cell's area inside each AR6 land region, and the
    ``remainder`` outside all of them, from a fine regular grid of ``resolution`` degrees."""
    regions = ar6_land_regions()
    nlat, nlon = round(180 / resolution), round(360 / resolution)
    fine = grids.regular_grid(nlat, nlon, lon0=0.0)
    lon = np.asarray(fine["lon"], dtype=float)
    lat = np.asarray(fine["lat"], dtype=float)
    numbers = np.asarray(regions.mask(lon, lat).values, dtype=float)  # NaN outside all
    wlat, wlon = overlap_weights(fine, grid)
    area = area_measure(grid)
    codes = list(regions.numbers)
    shares = np.stack([_remap_sum((numbers == n).astype(np.float64), wlat, wlon) / area
                       for n in codes])  # one fine indicator at a time (8 MB at 0.25°)
    shares = np.clip(shares, 0.0, 1.0)
    remainder = np.clip(1.0 - shares.sum(axis=0), 0.0, None)
    frac = np.concatenate([shares, remainder[None]])
    return _fractions(frac, [*regions.abbrevs, REMAINDER], "ar6",
                      [*regions.names, "land outside every AR6 land region"], grid)


def _fractions(values: np.ndarray, labels: list[str], region_set: str, names: list[str],
               grid: xr.Dataset) -> xr.DataArray:
    return xr.DataArray(
        values, dims=("region", "lat", "lon"),
        coords={"region": labels, "region_set": ("region", [region_set] * len(labels)),
                "region_name": ("region", names), "lat": grid["lat"], "lon": grid["lon"]},
        name="region_fraction",
        attrs={"units": "1", "long_name": "share of the cell's area inside the region"})


def region_fractions(grid: xr.Dataset, sets: tuple[str, ...] = REGION_SETS,
                     resolution: float = 0.25) -> xr.DataArray:
    """The fractions of every requested set along one ``region`` dimension."""
    parts = []
    for s in sets:
        if s == "ar6":
            parts.append(ar6_fractions(grid, resolution))
        elif s == "band":
            parts.append(band_fractions(grid))
        else:
            raise ValueError(f"unknown region set {s!r}; expected one of {REGION_SETS}")
    return xr.concat(parts, dim="region")


def _flat(da: xr.DataArray | np.ndarray) -> np.ndarray:
    return np.asarray(getattr(da, "values", da), dtype=np.float64).reshape(-1)


def regional_totals(flux: xr.DataArray, landfrac: xr.DataArray, area: xr.DataArray,
                    fractions: xr.DataArray) -> np.ndarray:
    """T_r = Σ flux·landfrac·area·f_r (Pg yr-1) for one 2-D field: one value per region,
    then the ``global`` total (NaN terms count as zero, as in ``land_total``)."""
    x = _flat(flux) * _flat(landfrac) * _flat(area)
    x = np.where(np.isfinite(x), x, 0.0)
    f = np.asarray(fractions.values, dtype=np.float64).reshape(fractions.sizes["region"], -1)
    return np.append(f @ x, x.sum()) / G_PER_PG


def regional_metrics(model: xr.DataArray, median: xr.DataArray, mad: xr.DataArray,
                     fractions: xr.DataArray,
                     weights: xr.DataArray | None = None) -> pd.DataFrame:
    """Table 1 per region for one 2-D model field (see the module docstring), one row per
    region of ``fractions`` and a ``global`` row (f = 1: Table 1 itself). ``weights``: the
    evaluation's cell weights (NaN: not evaluated), which weight the moments as in Table 1;
    cell counts stay fraction-weighted counts."""
    m, o, d = _flat(model), _flat(median), _flat(mad)
    cw = np.ones_like(m) if weights is None else _flat(weights)
    ok = np.isfinite(m) & np.isfinite(o) & np.isfinite(cw) & (cw > 0)
    f = np.asarray(fractions.values, dtype=np.float64).reshape(fractions.sizes["region"], -1)
    counts = np.vstack([f[:, ok], np.ones((1, int(ok.sum())))])
    w = counts * cw[ok]
    m, o, e = m[ok], o[ok], m[ok] - o[ok]
    within = (np.abs(e) <= d[ok]).astype(np.float64)
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_m, mean_o = (w @ m) / n, (w @ o) / n
        vm = (w @ m**2) / n - mean_m**2
        vo = (w @ o**2) / n - mean_o**2
        cov = (w @ (m * o)) / n - mean_m * mean_o
        r2 = np.where((vm > 0) & (vo > 0), cov**2 / (vm * vo), np.nan)
        bias = (w @ e) / n
        rmse = np.sqrt((w @ e**2) / n)
    empty = n <= 0
    regions = [*fractions["region"].values.tolist(), GLOBAL]
    sets = [*fractions["region_set"].values.tolist(), GLOBAL]
    return pd.DataFrame({
        "region": regions, "region_set": sets, "n_cells": counts.sum(axis=1),
        "n_within_mad": counts @ within,
        "rmse": np.where(empty, np.nan, rmse), "r2": np.where(empty, np.nan, r2),
        "bias": np.where(empty, np.nan, bias)})


__all__ = ["BANDS", "GLOBAL", "REGION_SETS", "REMAINDER", "ar6_fractions", "band_fractions",
           "region_fractions", "regional_metrics", "regional_totals"]
