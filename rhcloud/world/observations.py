"""Synthetic stand-ins for the observation-derived Rh products and the covariates, written
in the formats, resolutions (reduced for the demo), time axes and units the readers of
:mod:`rhcloud.products` expect, derived from the planted truth of :mod:`.planted`.

Each product observes ``planted.true_rh`` with its own smooth regional departure and a
little pixel noise (the real products disagree by region: Konings et al. higher in the
tropics and lower in western North America and central Asia; Hashimoto et al. and Warner et
al. with their own smooth departures). Land is Earth's (``rhcloud.core.landmask.is_land``). The monthly
files carry a seasonal cycle whose time-weighted mean is exactly the annual field, so the
readers' annual climatologies reproduce it to float32 precision.

``write_observations`` returns the config entries (``products``, ``npp_reference``,
``covariates``) and a truth dict: each product's land total on its own grid (computed here
with NumPy from the values written, independently of the readers) and its departures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cftime
import numpy as np
import xarray as xr

from rhcloud.core.landmask import is_land, land_fraction
from rhcloud.world import planted

EARTH_RADIUS_M = 6_371_000.0
G_PER_PG = 1e15

SCALES: dict[str, dict[str, Any]] = {
    # warner_deg: the "1 km" raster (finer than the 0.5 deg blocks it is averaged to)
    "demo": {"warner_deg": 0.1, "soilgrids_deg": 0.1, "gimms_deg": 0.25,
             "hashimoto_years": (2010, 2012), "gswp3_years": (1990, 1992),
             "gimms_years": (2000, 2002)},
    "test": {"warner_deg": 0.125, "soilgrids_deg": 0.25, "gimms_deg": 0.5,
             "hashimoto_years": (2012, 2012), "gswp3_years": (2010, 2010),
             "gimms_years": (2010, 2011)},
    # the real products' own time spans (large: hundreds of MB)
    "full": {"warner_deg": 0.05, "soilgrids_deg": 0.05, "gimms_deg": 0.1,
             "hashimoto_years": (1965, 2012), "gswp3_years": (1990, 2010),
             "gimms_years": (1982, 2011)},
}
KONINGS_YEARS = (2010, 2012)
HASHIMOTO_TIME_UNITS = "days since 1965-01-01 00:00:00"
KONINGS_TIME_UNITS = "days since 2010-01-01 00:00:00"
GSWP3_TIME_UNITS = "days since 1901-01-01 00:00:00"
GIMMS_TIME_UNITS = "days since 1982-01-01 00:00:00"
NODATA = -9999.0
HASHIMOTO_UNITS = "gC/m2/month"  # a non-standard spelling the readers must meet
HASHIMOTO_SOUTH = -60.0  # land south of this is NODATA, a second declared fill value
NPP_TO_RH = 1.10  # the world's observed NPP is 1.1 x true Rh, with its own departure

LITHOLOGY_CLASSES: dict[int, str] = {
    1: "su: unconsolidated sediments",
    2: "ss: siliciclastic sedimentary rocks",
    3: "sc: carbonate sedimentary rocks",
    4: "mt: metamorphics",
    5: "pa: acid plutonic rocks",
    6: "vb: basic volcanic rocks",
}

# Each product's overall level relative to the truth (its departure's mean aside): the
# products' totals span about the paper's 43-51 Pg C yr-1 (Hashimoto lowest, Konings highest).
PRODUCT_LEVELS = {"warner2019": 1.0, "hashimoto2015": 0.975, "konings2019": 1.14}

DEPARTURES = {
    "warner2019": "(1 + 0.12 exp(-((lat-62)/10)^2) - 0.08 exp(-((|lat|-25)/8)^2)): higher in "
                  "the boreal zone, lower in the dry subtropics; its two maps are x1.05 "
                  "(Bond-Lamberty 2004) and x0.95 (Subke 2006) of that, each with 3 % "
                  "independent pixel noise; the product is their mean",
    "hashimoto2015": "(1 - 0.10 exp(-(lat/15)^2) + 0.08 exp(-((|lat|-45)/12)^2)): lower in "
                     "the inner tropics, higher in the mid-latitudes; 3 % cell noise",
    "konings2019": "(1 + 0.20 exp(-(lat/18)^2) - 0.35 G(40N, 245E; 8, 12) "
                   "- 0.35 G(43N, 70E; 7, 15)): higher in the tropics, lower in western North "
                   "America and central Asia (G: Gaussian bumps, sd in degrees lat, lon); "
                   "3 % cell noise; valid where the 4x5 cell is at least half land",
    "gimms": f"NPP = {NPP_TO_RH} x true Rh x (1 + 0.06 sin(lon) cos(lat)); 2 % cell noise",
}


# --------------------------------------------------------------------------------------
# planted departures (pure functions of lat/lon, degrees)
# --------------------------------------------------------------------------------------

def _bump(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float, slat: float,
          slon: float) -> np.ndarray:
    dlon = (np.asarray(lon) - lon0 + 180.0) % 360.0 - 180.0
    return np.exp(-((np.asarray(lat) - lat0) / slat) ** 2 / 2 - (dlon / slon) ** 2 / 2)


def warner_departure(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    lat = np.asarray(lat, float)
    return 1.0 + 0.12 * np.exp(-((lat - 62.0) / 10.0) ** 2) \
        - 0.08 * np.exp(-((np.abs(lat) - 25.0) / 8.0) ** 2) + 0.0 * np.asarray(lon)


def hashimoto_departure(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    lat = np.asarray(lat, float)
    return 1.0 - 0.10 * np.exp(-(lat / 15.0) ** 2) \
        + 0.08 * np.exp(-((np.abs(lat) - 45.0) / 12.0) ** 2) + 0.0 * np.asarray(lon)


def konings_departure(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    lat = np.asarray(lat, float)
    return 1.0 + 0.20 * np.exp(-(lat / 18.0) ** 2) \
        - 0.35 * _bump(lat, lon, 40.0, 245.0, 8.0, 12.0) \
        - 0.35 * _bump(lat, lon, 43.0, 70.0, 7.0, 15.0)


def gimms_npp(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The world's observed NPP (g C m-2 yr-1) before noise."""
    return NPP_TO_RH * planted.true_rh(lat, lon) * \
        (1.0 + 0.06 * np.sin(np.radians(lon)) * np.cos(np.radians(lat)))


def soc_stock(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A plausible topsoil (0-30 cm) organic carbon stock (g C m-2): large where cold and
    wet (slow decomposition), small in deserts."""
    t = planted.mat(lat, lon)
    p = planted.map_(lat, lon)
    cold = 1.0 / (1.0 + np.exp((t - 2.0) / 4.0))
    wet = p / (p + 500.0)
    return 2000.0 + 9000.0 * wet * (0.4 + cold)


def lithology(lat: np.ndarray, lon: np.ndarray, seed: int) -> np.ndarray:
    """Integer lithology codes 1..6 (see LITHOLOGY_CLASSES) as smooth random patches
    (about 900 km across) at the given points."""
    lat = np.asarray(lat, float)
    lon = np.asarray(lon, float)
    fields = [planted.SmoothNoise.from_seed(seed * 31 + k, length_km=900.0, sd=1.0,
                                            n_features=60)(lat, lon) for k in range(6)]
    stack = np.stack(fields)
    stack[0] += 0.6 * (np.abs(lat) > 55)  # unconsolidated sediments on high-latitude plains
    stack[2] += 0.3 * (np.abs(lat) < 40)  # carbonates at low latitudes
    return (np.argmax(stack, axis=0) + 1).astype(np.uint8)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _axis(deg: float, lo: float, n: int) -> np.ndarray:
    return lo + deg * (np.arange(n) + 0.5)


def _areas(lat_edges: np.ndarray, lon_edges: np.ndarray) -> np.ndarray:
    dsin = np.abs(np.diff(np.sin(np.radians(lat_edges))))
    dlon = np.abs(np.radians(np.diff(lon_edges)))
    return EARTH_RADIUS_M**2 * np.outer(dsin, dlon)


def _total(field: np.ndarray, lat_edges: np.ndarray, lon_edges: np.ndarray) -> float:
    """Σ field × area over finite cells, Pg (field in g m-2 [yr-1])."""
    return float(np.nansum(np.asarray(field, np.float64) * _areas(lat_edges, lon_edges))
                 / G_PER_PG)


def _month_axis(y0: int, y1: int, units: str,
                calendar: str = "standard") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = [cftime.datetime(y, m, 1, calendar=calendar)
              for y in range(y0, y1 + 1) for m in range(1, 13)]
    starts.append(cftime.datetime(y1 + 1, 1, 1, calendar=calendar))
    edges = np.asarray(cftime.date2num(starts, units, calendar=calendar), dtype=float)
    bnds = np.stack([edges[:-1], edges[1:]], axis=1)
    return bnds, bnds.mean(axis=1), np.diff(edges)


def _seasonal(lat: np.ndarray, lengths: np.ndarray, amplitude: float = 0.5) -> np.ndarray:
    """(n_months, n_lat) factors whose month-length-weighted mean is 1 in every year."""
    nyear = lengths.size // 12
    month = np.tile(np.arange(12), nyear)
    amp = amplitude * np.abs(np.sin(np.radians(lat))) ** 0.5 + 0.05
    phase = np.where(lat >= 0, 6.5, 0.5)
    seas = amp[None, :] * np.cos(2 * np.pi * (month[:, None] - phase[None, :]) / 12.0)
    w = lengths.reshape(nyear, 12, 1)
    s = seas.reshape(nyear, 12, -1)
    s = s - (s * w).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
    return 1.0 + s.reshape(nyear * 12, -1)


def _time_vars(bnds: np.ndarray, mid: np.ndarray, units: str) -> dict[str, Any]:
    return {
        "coords": {"time": ("time", mid, {"units": units, "calendar": "standard",
                                          "bounds": "time_bnds", "standard_name": "time",
                                          "axis": "T"})},
        "time_bnds": (("time", "bnds"), bnds),
    }


def _write_netcdf(ds: xr.Dataset, path: Path, var: str) -> None:
    ds[var].encoding = {"zlib": True, "complevel": 1, "_FillValue": np.float32(1e20),
                        "chunksizes": (1,) + tuple(ds[var].shape[1:])
                        if ds[var].ndim == 3 else None}
    if ds[var].encoding["chunksizes"] is None:
        del ds[var].encoding["chunksizes"]
    for name in ("time", "time_bnds"):
        if name in ds.variables:
            ds[name].encoding = {"dtype": "float64"}
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4")


def _write_geotiff(path: Path, data: np.ndarray, deg: float, units: str, *,
                   dtype: str = "float32", nodata: float = NODATA,
                   tags: dict | None = None) -> None:
    """A global EPSG:4326 GeoTIFF, north-up, from -180 E, tiled 256x256, deflate."""
    import rasterio
    from rasterio.transform import from_origin

    ny, nx = data.shape
    profile = {"driver": "GTiff", "height": ny, "width": nx, "count": 1, "dtype": dtype,
               "crs": "EPSG:4326", "transform": from_origin(-180.0, 90.0, deg, deg),
               "nodata": nodata, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype), 1)
        dst.update_tags(units=units, **(tags or {}))


def _raster_axes(deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """North-up pixel centres (lat descending, lon from -180) and their edges."""
    ny, nx = round(180 / deg), round(360 / deg)
    lat = 90.0 - deg * (np.arange(ny) + 0.5)
    lon = -180.0 + deg * (np.arange(nx) + 0.5)
    return lat, lon, 90.0 - deg * np.arange(ny + 1), -180.0 + deg * np.arange(nx + 1)


# --------------------------------------------------------------------------------------
# the products
# --------------------------------------------------------------------------------------

def _warner(out: Path, deg: float, rng: np.random.Generator) -> tuple[list[str], dict]:
    lat, lon, lat_e, lon_e = _raster_axes(deg)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    land = is_land(la, lo)
    base = planted.true_rh(la, lo) * warner_departure(la, lo) * PRODUCT_LEVELS["warner2019"]
    paths, maps = [], []
    for label, factor in (("BondLamberty2004", 1.05), ("Subke2006", 0.95)):
        noise = 1.0 + 0.03 * rng.standard_normal(base.shape).astype(np.float32)
        rh = np.where(land, base * factor * noise, NODATA).astype(np.float32)
        path = out / f"warner2019_rh_{label}.tif"
        _write_geotiff(path, rh, deg, "g C m-2 yr-1",
                       tags={"method": label, "long_name": "annual soil heterotrophic "
                             "respiration (rhcloud stand-in)"})
        paths.append(str(path))
        maps.append(np.where(land, rh.astype(np.float64), np.nan))
    mean = (maps[0] + maps[1]) / 2.0
    truth = {"total_PgC_yr": _total(mean, lat_e, lon_e),
             "planted_total_PgC_yr": _total(np.where(land, planted.true_rh(la, lo), np.nan),
                                            lat_e, lon_e),
             "grid": f"{deg} deg GeoTIFF x2 (mean)", "departure": DEPARTURES["warner2019"]}
    return paths, truth | {"level": PRODUCT_LEVELS["warner2019"]}


def _monthly_flux_product(out: Path, name: str, lat: np.ndarray, lon: np.ndarray,
                          lat_e: np.ndarray, lon_e: np.ndarray, valid: np.ndarray,
                          annual: np.ndarray, years: tuple[int, int], units: str,
                          per: str, time_units: str, attrs: dict,
                          landfrac: np.ndarray,
                          second_fill: np.ndarray | None = None) -> tuple[str, float]:
    """A monthly NetCDF of ``annual`` (g m-2 yr-1) as monthly totals (``per='month'``) or
    daily rates (``per='day'``); returns its path and the land total the file implies,
    Σ annual × cell area × ``landfrac`` (the coastline's, as the run weights a product
    without a land fraction of its own). ``second_fill``: cells written as ``NODATA`` and
    declared as ``missing_value`` beside the ``_FillValue`` (two fill values, as HWSD)."""
    bnds, mid, lengths = _month_axis(*years, time_units)
    fac = _seasonal(lat, lengths)  # (nt, nlat)
    nyear = lengths.size // 12
    year_days = np.repeat(lengths.reshape(nyear, 12).sum(axis=1), 12)
    if per == "month":  # monthly totals: annual x share of the year's months
        share = fac * lengths[:, None] / year_days[:, None]
        data = share[:, :, None] * annual[None, :, :]
    else:  # daily rate
        data = fac[:, :, None] * annual[None, :, :] / year_days[:, None, None]
    if second_fill is not None:
        valid = valid & ~second_fill
    data = np.where(valid[None], data, np.nan).astype(np.float32)
    # the file's implied annual field, as the readers define it (float64 from float32)
    d64 = data.astype(np.float64)
    if per == "month":
        implied = d64.mean(axis=0) * 12.0
    else:
        implied = (d64 * lengths[:, None, None]).sum(axis=0) / lengths.sum() \
            * (lengths.sum() / nyear)
    lat_b = np.stack([lat_e[:-1], lat_e[1:]], axis=1)
    lon_b = np.stack([lon_e[:-1], lon_e[1:]], axis=1)
    tv = _time_vars(bnds, mid, time_units)
    ds = xr.Dataset(
        {"rh": (("time", "lat", "lon"), data, {"units": units, **attrs}),
         "time_bnds": tv["time_bnds"],
         "lat_bnds": (("lat", "bnds"), lat_b), "lon_bnds": (("lon", "bnds"), lon_b)},
        coords={**tv["coords"],
                "lat": ("lat", lat, {"units": "degrees_north", "bounds": "lat_bnds"}),
                "lon": ("lon", lon, {"units": "degrees_east", "bounds": "lon_bnds"})},
        attrs={"title": f"{name} (rhcloud synthetic stand-in)",
               "comment": "Synthetic stand-in generated by rhcloud from its planted truth; "
                          "not the published product."},
    )
    path = out / f"{name}_rh_monthly.nc"
    _write_netcdf(ds, path, "rh")
    if second_fill is not None:
        _declare_second_fill(path, "rh", second_fill)
    return str(path), _total(implied * landfrac, lat_e, lon_e)


def _declare_second_fill(path: Path, var: str, cells: np.ndarray) -> None:
    """Write ``NODATA`` into ``cells`` of every time step of ``var`` and declare it as
    ``missing_value`` (the ``_FillValue`` stays): a file with two fill values."""
    import netCDF4

    with netCDF4.Dataset(path, "a") as nc:
        v = nc[var]
        v.set_auto_maskandscale(False)
        v.setncattr("missing_value", np.float32(NODATA))
        for t in range(v.shape[0]):
            step = v[t]
            step[cells] = NODATA
            v[t] = step


def _hashimoto(out: Path, years: tuple[int, int], rng: np.random.Generator) -> tuple[str, dict]:
    from rhcloud.core.grids import regular_grid

    deg = 0.5
    lat = _axis(deg, -90.0, 360)
    lon = _axis(deg, -180.0, 720)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    valid = is_land(la, lo)
    annual = planted.true_rh(la, lo) * hashimoto_departure(la, lo) * \
        PRODUCT_LEVELS["hashimoto2015"] * (1.0 + 0.03 * rng.standard_normal(la.shape))
    grid = regular_grid(360, 720, lon0=-179.75)
    path, total = _monthly_flux_product(
        out, "hashimoto2015", lat, lon, np.linspace(-90, 90, 361), np.linspace(-180, 180, 721),
        valid, annual, years, HASHIMOTO_UNITS, "month", HASHIMOTO_TIME_UNITS,
        {"long_name": "soil heterotrophic respiration (monthly total)"},
        land_fraction(grid), second_fill=valid & (la < HASHIMOTO_SOUTH))
    truth = {"total_PgC_yr": total,
             "planted_total_PgC_yr": _total(np.where(valid, planted.true_rh(la, lo), np.nan),
                                            np.linspace(-90, 90, 361),
                                            np.linspace(-180, 180, 721)),
             "grid": "0.5 deg NetCDF, monthly", "years": list(years),
             "departure": DEPARTURES["hashimoto2015"], "level": PRODUCT_LEVELS["hashimoto2015"],
             "quirks": [f"units spelled {HASHIMOTO_UNITS!r}", "two fill values: _FillValue "
                        f"1e20 (sea) and missing_value {NODATA:g} (land south of "
                        f"{HASHIMOTO_SOUTH:g} deg)"]}
    return path, truth


def _konings(out: Path, rng: np.random.Generator) -> tuple[str, dict]:
    from rhcloud.core.grids import regular_grid

    grid = regular_grid(45, 72, lon0=0.0)  # 4 x 5 deg, centres at -88..88, 0..355
    lat, lon = np.asarray(grid.lat), np.asarray(grid.lon)
    lat_e = np.append(grid.lat_bnds.values[:, 0], 90.0)
    lon_e = np.append(grid.lon_bnds.values[:, 0], grid.lon_bnds.values[-1, 1])
    lf = land_fraction(grid, nsub=8)
    valid = lf >= 0.5
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    annual = planted.true_rh(la, lo) * konings_departure(la, lo) * \
        PRODUCT_LEVELS["konings2019"] * (1.0 + 0.03 * rng.standard_normal(la.shape))
    path, total = _monthly_flux_product(
        out, "konings2019", lat, lon, lat_e, lon_e, valid, annual, KONINGS_YEARS,
        "g C m-2 day-1", "day", KONINGS_TIME_UNITS,
        {"long_name": "heterotrophic respiration (monthly mean rate)"}, land_fraction(grid))
    truth = {"total_PgC_yr": total,
             "planted_total_PgC_yr": _total(np.where(valid, planted.true_rh(la, lo), np.nan),
                                            lat_e, lon_e),
             "grid": "4x5 deg NetCDF, monthly", "years": list(KONINGS_YEARS),
             "departure": DEPARTURES["konings2019"], "level": PRODUCT_LEVELS["konings2019"]}
    return path, truth


def _gswp3(out: Path, years: tuple[int, int]) -> tuple[dict[str, str], dict]:
    """GSWP3-format tas (K) and pr (kg m-2 s-1), monthly, 0.5 deg, land only, stored with
    descending latitude and longitudes in [-180, 180)."""
    deg = 0.5
    lat = 90.0 - deg * (np.arange(360) + 0.5)
    lon = -180.0 + deg * (np.arange(720) + 0.5)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    land = is_land(la, lo)
    bnds, mid, lengths = _month_axis(*years, GSWP3_TIME_UNITS)
    fac = _seasonal(lat, lengths, amplitude=0.6)
    nyear = lengths.size // 12
    year_days = np.repeat(lengths.reshape(nyear, 12).sum(axis=1), 12)
    mat, map_ = planted.mat(la, lo), planted.map_(la, lo)
    tas = mat[None] + 273.15 + 12.0 * (fac[:, :, None] - 1.0)
    pr = map_[None] / (year_days[:, None, None] * 86400.0) * fac[:, :, None]
    paths = {}
    tv = _time_vars(bnds, mid, GSWP3_TIME_UNITS)
    for var, data, units, long_name in (
        ("tas", tas, "K", "Near-Surface Air Temperature"),
        ("pr", pr, "kg m-2 s-1", "Precipitation"),
    ):
        arr = np.where(land[None], data, np.nan).astype(np.float32)
        ds = xr.Dataset({var: (("time", "lat", "lon"), arr,
                               {"units": units, "long_name": long_name}),
                         "time_bnds": tv["time_bnds"]},
                        coords={**tv["coords"],
                                "lat": ("lat", lat, {"units": "degrees_north"}),
                                "lon": ("lon", lon, {"units": "degrees_east"})},
                        attrs={"title": "GSWP3-format monthly forcing (rhcloud stand-in)"})
        path = out / f"gswp3_{var}_monthly_{years[0]}-{years[1]}.nc"
        _write_netcdf(ds, path, var)
        paths[var] = str(path)
    truth = {"MAT": "planted.mat(lat, lon) in degC (tas = MAT + 273.15 + seasonal cycle "
                    "with zero time-weighted mean)",
             "MAP": "planted.map_(lat, lon) in mm yr-1 (pr = MAP / year length in s x "
                    "seasonal factor with time-weighted mean 1)",
             "years": list(years)}
    return paths, truth


def _soilgrids(out: Path, deg: float) -> tuple[str, dict]:
    lat, lon, lat_e, lon_e = _raster_axes(deg)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    land = is_land(la, lo) & (la > -60.0)  # SoilGrids does not cover Antarctica
    soc_t_ha = soc_stock(la, lo) / 100.0
    data = np.where(land, soc_t_ha, NODATA).astype(np.float32)
    path = out / "soilgrids_ocs_0-30cm_mean.tif"
    _write_geotiff(path, data, deg, "t ha-1", tags={"long_name": "soil organic carbon stock "
                                                    "0-30 cm (rhcloud stand-in)"})
    g_m2 = np.where(land, data.astype(np.float64) * 100.0, np.nan)
    return str(path), {"total_PgC": _total(g_m2, lat_e, lon_e), "units_in_file": "t ha-1",
                       "form": "2000 + 9000 * MAP/(MAP+500) * (0.4 + cold(MAT)) g C m-2"}


def _gimms(out: Path, deg: float, years: tuple[int, int],
           rng: np.random.Generator) -> tuple[str, dict]:
    n_lat, n_lon = round(180 / deg), round(360 / deg)
    lat = _axis(deg, -90.0, n_lat)
    lon = _axis(deg, -180.0, n_lon)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    land = is_land(la, lo)
    npp = gimms_npp(la, lo)
    ny = years[1] - years[0] + 1
    data = np.stack([npp * (1.0 + 0.02 * rng.standard_normal(npp.shape)) for _ in range(ny)])
    data = (np.where(land[None], data, np.nan) / 1000.0).astype(np.float32)  # kg C m-2 yr-1
    starts = [cftime.datetime(y, 1, 1, calendar="standard") for y in range(years[0],
                                                                          years[1] + 2)]
    edges = np.asarray(cftime.date2num(starts, GIMMS_TIME_UNITS, calendar="standard"))
    bnds = np.stack([edges[:-1], edges[1:]], axis=1)
    tv = _time_vars(bnds, bnds.mean(axis=1), GIMMS_TIME_UNITS)
    ds = xr.Dataset({"npp": (("time", "lat", "lon"), data,
                             {"units": "kg C m-2 yr-1", "long_name": "annual net primary "
                              "production"}),
                     "time_bnds": tv["time_bnds"]},
                    coords={**tv["coords"], "lat": ("lat", lat, {"units": "degrees_north"}),
                            "lon": ("lon", lon, {"units": "degrees_east"})},
                    attrs={"title": "MODIS-GIMMS-format annual NPP (rhcloud stand-in)"})
    path = out / f"gimms_npp_annual_{years[0]}-{years[1]}.nc"
    _write_netcdf(ds, path, "npp")
    yl = np.diff(edges)
    implied = (data.astype(np.float64) * yl[:, None, None]).sum(axis=0) / yl.sum() * 1000.0
    lat_e = np.linspace(-90, 90, n_lat + 1)
    lon_e = np.linspace(-180, 180, n_lon + 1)
    from rhcloud.core.grids import regular_grid

    lf = land_fraction(regular_grid(n_lat, n_lon, lon0=-180.0 + deg / 2))  # as the run weights
    return str(path), {"total_PgC_yr": _total(implied * lf, lat_e, lon_e), "years": list(years),
                       "units_in_file": "kg C m-2 yr-1", "departure": DEPARTURES["gimms"]}


def _glim(out: Path, seed: int) -> tuple[str, dict]:
    deg = 0.5
    lat, lon, _, _ = _raster_axes(deg)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    land = is_land(la, lo)
    # patches evaluated on 2 deg cells (4 x 4 pixels share a class before masking)
    c_lat, c_lon, _, _ = _raster_axes(2.0)
    coarse = lithology(*np.meshgrid(c_lat, c_lon, indexing="ij"), seed)
    r = round(2.0 / deg)
    codes = np.where(land, np.repeat(np.repeat(coarse, r, axis=0), r, axis=1), 0)
    codes = codes.astype(np.uint8)
    path = out / "glim_lithology_0.5deg.tif"
    _write_geotiff(path, codes, deg, "1", dtype="uint8", nodata=0,
                   tags={"classes": json.dumps(LITHOLOGY_CLASSES)})
    present = sorted(int(c) for c in np.unique(codes[land]))
    return str(path), {"classes": LITHOLOGY_CLASSES, "present": present,
                       "nodata": 0, "grid": "0.5 deg GeoTIFF uint8"}


def write_observations(root: str | Path, seed: int = 0, scale: str = "demo") -> dict[str, Any]:
    """Write the stand-ins under ``root/observations/`` and return
    ``{"products": [...], "npp_reference": {...}, "covariates": {...}, "truth": {...}}``:
    the config entries (DESIGN.md form) pointing at the files, and the truth (per product
    ``total_PgC_yr``: the land total on its own grid in Pg C yr-1, Σ annual flux × cell
    area × land fraction over valid cells (the coastline's for the NetCDF products, the
    valid pixels' for Warner), R = 6371 km; and how it departs from ``planted.true_rh``).
    Also written as ``root/observations/observations.json``. Deterministic from ``seed``;
    ``scale`` is one of ``demo``, ``test``, ``full`` (see SCALES)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    cfg = SCALES[scale]
    out = Path(root) / "observations"
    out.mkdir(parents=True, exist_ok=True)
    ss = np.random.SeedSequence([seed, 20240657])
    rngs = [np.random.default_rng(s) for s in ss.spawn(4)]
    t0 = time.perf_counter()
    warner_paths, t_w = _warner(out, cfg["warner_deg"], rngs[0])
    hashimoto_path, t_h = _hashimoto(out, cfg["hashimoto_years"], rngs[1])
    konings_path, t_k = _konings(out, rngs[2])
    gswp3_paths, t_g = _gswp3(out, cfg["gswp3_years"])
    soc_path, t_s = _soilgrids(out, cfg["soilgrids_deg"])
    gimms_path, t_n = _gimms(out, cfg["gimms_deg"], cfg["gimms_years"], rngs[3])
    glim_path, t_l = _glim(out, seed)
    result: dict[str, Any] = {
        "products": [
            {"name": "warner2019", "reader": "warner", "path": warner_paths},
            {"name": "hashimoto2015", "reader": "hashimoto", "path": hashimoto_path,
             "variable": "rh"},
            {"name": "konings2019", "reader": "konings", "path": konings_path,
             "variable": "rh"},
        ],
        "npp_reference": {"name": "gimms", "reader": "gimms", "path": gimms_path,
                          "variable": "npp"},
        "covariates": {
            "MAT": {"reader": "gswp3", "path": gswp3_paths["tas"], "variable": "tas"},
            "MAP": {"reader": "gswp3", "path": gswp3_paths["pr"], "variable": "pr"},
            "SOC": {"reader": "soilgrids", "path": soc_path},
            "lithology": {"reader": "glim", "path": glim_path, "categorical": True,
                          "classes": {str(k): v for k, v in LITHOLOGY_CLASSES.items()}},
        },
        "truth": {
            "seed": seed, "scale": scale, "units": {"total_PgC_yr": "Pg C yr-1"},
            "products": {"warner2019": t_w, "hashimoto2015": t_h, "konings2019": t_k},
            "npp_reference": t_n,
            "covariates": {"GSWP3": t_g, "SOC": t_s, "lithology": t_l},
            "generation_seconds": None,
        },
    }
    result["truth"]["generation_seconds"] = round(time.perf_counter() - t0, 2)
    (out / "observations.json").write_text(json.dumps(result, indent=2))
    return result
