"""Readers for the observation-derived Rh products, the NPP reference and the covariates,
each from the format and units it is published in.

Every reader has the signature ``reader(entry: dict, storage_options: dict | None) ->
xr.Dataset`` (see :mod:`rhcloud.products.io` for the output layout) and takes the config
entry ``{name, reader, path, variable, units, categorical, ...}``; ``variable`` and
``units`` override a reader's defaults (the names in the published files), and a file whose
variable or units differ from what is expected raises ``ProductError`` naming the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from rhcloud.core.landmask import coastline_landfrac
from rhcloud.products import io
from rhcloud.products.units import (
    ProductError,
    parse_flux_units,
    precipitation_factor,
    soc_factor,
    temperature_offset,
)
from rhcloud.storage.paths import names_a_file

FLUX_UNITS = "g m-2 yr-1"
FLUX_ATTRS = {"units": FLUX_UNITS, "long_name": "annual carbon flux (mass of carbon)",
              "cell_methods": "area: mean where land time: mean"}

CITATIONS = {
    "warner": "Warner, D. L., Bond-Lamberty, B., Jian, J., Stell, E., Vargas, R. (2019): "
              "Spatial predictions and associated uncertainty of annual soil respiration at "
              "the global scale. Global Biogeochem. Cycles 33, doi:10.1029/2019GB006264",
    "hashimoto": "Hashimoto, S., et al. (2015): Global spatiotemporal distribution of soil "
                 "respiration modeled using a global database. Biogeosciences 12, 4121-4132, "
                 "doi:10.5194/bg-12-4121-2015",
    "konings": "Konings, A. G., et al. (2019): Global satellite-driven estimates of "
               "heterotrophic respiration. Biogeosciences 16, 2269-2284, "
               "doi:10.5194/bg-16-2269-2019",
    "gswp3": "Kim, H. (2017): Global Soil Wetness Project Phase 3 Atmospheric Boundary "
             "Conditions (Experiment 1). DIAS, doi:10.20783/DIAS.501",
    "soilgrids": "Hengl, T., et al. (2017): SoilGrids250m: Global gridded soil information "
                 "based on machine learning. PLOS ONE 12, e0169748, "
                 "doi:10.1371/journal.pone.0169748",
    "gimms": "Smith, W. K., et al. (2016): Large divergence of satellite and Earth system "
             "model estimates of global terrestrial CO2 fertilization. Nature Climate Change "
             "6, 306-310, doi:10.1038/nclimate2879 (MODIS-GIMMS NPP)",
    "hwsd": "FAO/IIASA/ISRIC/ISSCAS/JRC (2012): Harmonized World Soil Database (version "
            "1.2). FAO, Rome, and IIASA, Laxenburg",
    "glim": "Hartmann, J., Moosdorf, N. (2012): The new global lithological map database "
            "GLiM. Geochem. Geophys. Geosyst. 13, Q12004, doi:10.1029/2012GC004370",
}

# Default variable names / units expected in each reader's files. Where the published
# file's own names were not verifiable they are the names the rhcloud stand-ins use; an
# entry's 'variable'/'units' keys override them (see catalogs/observations.yaml).
DEFAULT_VARIABLE = {"hashimoto": "rh", "konings": "rh", "gimms": "npp"}
WARNER_UNITS = "g C m-2 yr-1"
SOILGRIDS_UNITS = "t ha-1"


def _path(entry: dict) -> str:
    try:
        return str(entry["path"])
    except KeyError:
        raise ProductError(f"entry {entry.get('name', entry)!r} has no 'path'") from None


def _expect_variable(ds: xr.Dataset, var: str, path: str) -> None:
    if var not in ds.data_vars:
        raise ProductError(f"{path}: variable {var!r} not found; the file has "
                           f"{sorted(map(str, ds.data_vars))} (set 'variable' in the entry)")


def _file_units(da: xr.DataArray, entry: dict, path: str, default: str | None) -> str:
    """The units to convert from: the file's ``units`` attribute, checked against the
    entry's ``units`` (or the reader's default) when both exist."""
    declared = da.attrs.get("units")
    expected = entry.get("units", default)
    if declared is not None and expected is not None and \
            _canon(declared) != _canon(expected):
        raise ProductError(f"{path}: variable {da.name!r} has units {declared!r}, expected "
                           f"{expected!r} (fix the entry's 'units' if the file is right)")
    units = declared if declared is not None else expected
    if units is None:
        raise ProductError(f"{path}: variable {da.name!r} has no units attribute and the "
                           "entry gives none; set 'units'")
    return str(units)


def _canon(u: str) -> str:
    return " ".join(str(u).replace("/", " / ").split()).lower()


# --------------------------------------------------------------------------------------
# time means
# --------------------------------------------------------------------------------------

def annual_flux(da: xr.DataArray, ds: xr.Dataset, units: str, path: str,
                period: tuple[int, int] | None = None) -> tuple[xr.DataArray, dict]:
    """Annual-mean flux in g m-2 yr-1 from a (time, lat, lon) or (lat, lon) field.

    Rates (per s, day or yr) are averaged weighted by time-step length, per-second and
    per-day rates multiplied by the mean year length of the data's own calendar over the
    averaged steps; monthly totals (``month-1``) are averaged and multiplied by 12.
    ``period`` (inclusive years) restricts the average. Returns the field and notes."""
    fu = parse_flux_units(units, where=f"{path}: variable {da.name!r}")
    da = da.astype(np.float64)  # accumulate in float64: the stored float32 is the limit
    if "time" not in da.dims:
        if fu.per == "month":
            raise ProductError(f"{path}: {da.name!r} in {units!r} (per month) has no time axis")
        if fu.per == "s":
            return da * fu.factor * 365.2425 * 86400.0, {"year_days": 365.2425}
        return da * fu.factor, {}
    if period is not None:
        years = da["time"].dt.year
        da = da.sel(time=(years >= period[0]) & (years <= period[1]))
        if da.sizes["time"] == 0:
            raise ProductError(f"{path}: no time steps in period {period}")
    w = io.month_weights(da["time"], ds.sel(time=da["time"]) if "time" in ds.dims else ds)
    steps = io.time_steps_per_year(da["time"], w)
    n = da.sizes["time"]
    if fu.per == "month":
        if steps != 12.0 or n % 12:
            raise ProductError(f"{path}: {da.name!r} in {units!r} needs whole years of "
                               f"monthly steps, got {n} steps")
        return da.mean("time") * fu.factor * 12.0, {"n_months": n}
    mean = da.weighted(w).mean("time")
    year_days = float(w.sum()) / (n / steps)
    if fu.per == "s":
        return mean * fu.factor * year_days * 86400.0, {"year_days": year_days}
    return mean * fu.factor, {"year_days": year_days}


# --------------------------------------------------------------------------------------
# NetCDF products
# --------------------------------------------------------------------------------------

def _netcdf_flux(entry: dict, storage_options: dict | None, reader: str,
                 notes: str) -> xr.Dataset:
    path = _path(entry)
    ds = io.open_netcdf(path, storage_options, chunks={"time": 12})
    var = entry.get("variable", DEFAULT_VARIABLE.get(reader))
    if var is None:
        raise ProductError(f"{path}: the {reader!r} reader needs 'variable' in the entry")
    _expect_variable(ds, var, path)
    da, grid = io.netcdf_grid(ds, var, path, name=entry.get("name", reader))
    units = _file_units(ds[var], entry, path, None)
    period = tuple(entry["period"]) if entry.get("period") else None
    flux, tnotes = annual_flux(da, ds, units, path, period)
    landfrac = _landfrac(ds, flux, path, entry, grid, storage_options)
    attrs = io.attrs_for(entry, path, CITATIONS.get(reader, entry.get("citation", "")),
                         FLUX_UNITS, f"{notes} Source units {units!r} converted to "
                         f"{FLUX_UNITS}.", source_units=units, variable=var,
                         landfrac_source=landfrac.attrs["source"],
                         **{k: v for k, v in tnotes.items()})
    return io.assemble("flux", flux.astype(np.float64), landfrac, grid, attrs, FLUX_ATTRS)


def _landfrac(ds: xr.Dataset, field: xr.DataArray, path: str, entry: dict,
              grid: xr.Dataset, storage_options: dict | None = None) -> xr.DataArray:
    """Land fraction of a product where it has data: ``entry['landfrac']`` names a file
    (its land-fraction variable, on the product's own grid, else ProductError naming the
    file) or a variable of the product's file (0..1, or % when its units say so); without
    it, the real coastline on the product's grid (``rhcloud.core.landmask``).
    ``attrs['source']`` says which."""
    valid = field.notnull().astype(np.float64)
    name = entry.get("landfrac")
    if not name:
        lf = coastline_landfrac(grid, lazy=True)
        return (lf * valid).assign_attrs(source=lf.attrs["source"])
    if names_a_file(name):
        lf, source = _landfrac_file(str(name), path, grid, storage_options), f"file {name}"
    else:
        _expect_variable(ds, name, path)
        lf, _ = io.netcdf_grid(ds, name, path, name="landfrac")
        source = f"variable {name!r} of the file"
    scale = 0.01 if str(lf.attrs.get("units", "")).strip() == "%" else 1.0
    return ((lf.fillna(0.0) * scale).clip(0.0, 1.0) * valid).assign_attrs(source=source)


LANDFRAC_VARIABLES = ("landfrac", "sftlf", "land_fraction", "lsm", "landmask", "mask")


def _landfrac_file(lf_path: str, product_path: str, grid: xr.Dataset,
                   storage_options: dict | None) -> xr.DataArray:
    """The land fraction in ``lf_path`` (a variable named like one of
    :data:`LANDFRAC_VARIABLES`, or its only 2-D variable) on ``grid`` — the product's."""
    lf_ds = io.open_netcdf(lf_path, storage_options)
    names = [v for v in LANDFRAC_VARIABLES if v in lf_ds.data_vars] or \
        [str(v) for v in lf_ds.data_vars if lf_ds[v].ndim == 2]
    if len(names) < 1:
        raise ProductError(f"{lf_path}: no land-fraction variable (looked for "
                           f"{list(LANDFRAC_VARIABLES)} or a single 2-D variable)")
    lf, lf_grid = io.netcdf_grid(lf_ds, names[0], lf_path, name="landfrac")
    if "time" in lf.dims:
        lf = lf.isel(time=0, drop=True)
    same = lf_grid.sizes == grid.sizes and \
        np.allclose(lf_grid["lat"], grid["lat"], atol=1e-4) and \
        np.allclose(lf_grid["lon"], grid["lon"], atol=1e-4)
    if not same:
        raise ProductError(
            f"{lf_path}: land fraction grid ({lf_grid.sizes['lat']} x "
            f"{lf_grid.sizes['lon']}) does not match the grid of {product_path} "
            f"({grid.sizes['lat']} x {grid.sizes['lon']}); the 'landfrac' file must be on the "
            "product's own grid")
    return lf.load()


def read_hashimoto(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """Hashimoto et al. (2015): monthly Rh NetCDF at 0.5°, 1965–2012; mean over the whole
    period (or ``entry['period']``), in g C m-2 yr-1."""
    return _netcdf_flux(entry, storage_options, "hashimoto",
                        "Hashimoto et al. 2015 monthly Rh, mean over its period.")


def read_konings(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """Konings et al. (2019): monthly Rh NetCDF at 4°×5°, 2010–2012; mean over the period,
    in g C m-2 yr-1."""
    return _netcdf_flux(entry, storage_options, "konings",
                        "Konings et al. 2019 monthly Rh (4x5 deg), mean over 2010-2012.")


def read_gimms(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """GIMMS-based NPP (Smith et al. 2016): NetCDF of annual (or monthly) NPP, mean over the
    period, in g C m-2 yr-1. A GeoTIFF path is read with the GeoTIFF reader."""
    if _path(entry).lower().endswith((".tif", ".tiff")):
        return _geotiff(entry, storage_options, "gimms", kind="flux", default_units=None,
                        notes="GIMMS NPP GeoTIFF.")
    return _netcdf_flux(entry, storage_options, "gimms", "MODIS-GIMMS NPP, mean over its "
                        "years.")


def read_netcdf(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """Any gridded NetCDF: ``variable`` (required) and ``units`` (used when the file has no
    units attribute, checked against it otherwise). A carbon flux is converted to
    g C m-2 yr-1 and time-averaged; ``kind: value`` keeps a covariate's units (time mean);
    ``categorical: true`` reads class codes (first time step, no averaging)."""
    kind = _kind(entry)
    if kind == "flux":
        return _netcdf_flux(entry, storage_options, "netcdf", "Generic NetCDF flux.")
    path = _path(entry)
    ds = io.open_netcdf(path, storage_options, chunks={"time": 12})
    var = entry.get("variable")
    if not var:
        raise ProductError(f"{path}: the 'netcdf' reader needs 'variable' in the entry")
    _expect_variable(ds, var, path)
    da, grid = io.netcdf_grid(ds, var, path, name=entry.get("name", "netcdf"))
    units = _file_units(ds[var], entry, path, None)
    if kind == "categorical":
        da = da.isel(time=0) if "time" in da.dims else da
        field = da.astype(np.float64)
    else:
        field = da.mean("time") if "time" in da.dims else da
    attrs = io.attrs_for(entry, path, entry.get("citation", ""), units,
                         "Generic NetCDF covariate.", variable=var)
    return io.assemble(kind, field, field.notnull().astype(np.float64), grid, attrs,
                       {"units": units})


def _kind(entry: dict) -> str:
    if entry.get("categorical"):
        return "categorical"
    kind = entry.get("kind")
    if kind is not None:
        if kind not in ("flux", "value", "categorical"):
            raise ProductError(f"entry {entry.get('name')!r}: kind must be flux, value or "
                               f"categorical, got {kind!r}")
        return kind
    units = entry.get("units")
    if units is None:
        return "flux"
    try:
        parse_flux_units(units)
        return "flux"
    except ProductError:
        return "value"


# --------------------------------------------------------------------------------------
# GSWP3 (MAT, MAP)
# --------------------------------------------------------------------------------------

GSWP3_VARIABLES = {"tas": ("MAT", "degC", "mean annual air temperature"),
                   "pr": ("MAP", "mm yr-1", "mean annual precipitation")}


def read_gswp3(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """GSWP3 forcing NetCDF: ``tas`` (K) → MAT in °C, or ``pr`` (kg m-2 s-1) → MAP in
    mm yr-1 (1 kg m-2 of water = 1 mm; × the data's mean year length in s). Time means are
    weighted by time-step length; ``entry['period']`` restricts them."""
    path = _path(entry)
    var = entry.get("variable")
    if var not in GSWP3_VARIABLES:
        raise ProductError(f"{path}: the 'gswp3' reader takes variable 'tas' (MAT) or 'pr' "
                           f"(MAP), got {var!r}")
    ds = io.open_netcdf(path, storage_options, chunks={"time": 12})
    _expect_variable(ds, var, path)
    da, grid = io.netcdf_grid(ds, var, path, name=entry.get("name", "gswp3"))
    default_units = "K" if var == "tas" else "kg m-2 s-1"
    units = _file_units(ds[var], entry, path, default_units)
    da = da.astype(np.float64)
    if entry.get("period") and "time" in da.dims:
        years = da["time"].dt.year
        p0, p1 = entry["period"]
        da = da.sel(time=(years >= p0) & (years <= p1))
    name, out_units, long_name = GSWP3_VARIABLES[var]
    where = f"{path}: variable {var!r}"
    if "time" in da.dims:
        w = io.month_weights(da["time"], ds.sel(time=da["time"]))
        mean = da.weighted(w).mean("time")
        steps = io.time_steps_per_year(da["time"], w)
        year_days = float(w.sum()) / (da.sizes["time"] / steps)
    else:
        mean, year_days = da, 365.2425
    if var == "tas":
        value = mean + temperature_offset(units, where=where)
    else:
        factor, per = precipitation_factor(units, where=where)
        per_year = {"s": year_days * 86400.0, "day": year_days, "yr": 1.0, "month": 12.0}[per]
        value = mean * factor * per_year
    attrs = io.attrs_for(entry, path, CITATIONS["gswp3"], out_units,
                         f"GSWP3 {var} ({units}) -> {name} ({out_units}), time-weighted mean.",
                         source_units=units, variable=var, year_days=year_days)
    return io.assemble("value", value.astype(np.float64),
                       value.notnull().astype(np.float64), grid, attrs,
                       {"units": out_units, "long_name": long_name})


def read_hwsd(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """A soil organic carbon stock NetCDF (the Harmonized World Soil Database's ``soilc``,
    kg m-2, by default) → g C m-2 (``rhcloud.products.units.SOC_STOCK_UNITS``: ``Kg/m2``
    and the other spellings). Every fill value the file declares (``_FillValue`` and
    ``missing_value``, several of them) reads as missing."""
    path = _path(entry)
    ds = io.open_netcdf(path, storage_options)
    var = entry.get("variable", "soilc")
    _expect_variable(ds, var, path)
    da, grid = io.netcdf_grid(ds, var, path, name=entry.get("name", "hwsd"))
    units = _file_units(ds[var], entry, path, None)
    field = da.mean("time") if "time" in da.dims else da
    value = field.astype(np.float64) * soc_factor(units, where=f"{path}: variable {var!r}") \
        * float(entry.get("scale_factor", 1.0))
    attrs = io.attrs_for(entry, path, CITATIONS["hwsd"], "g m-2",
                         f"HWSD soil organic carbon stock ({units}) -> g m-2.",
                         source_units=units, variable=var)
    return io.assemble("value", value, value.notnull().astype(np.float64), grid, attrs,
                       {"units": "g m-2", "long_name": "soil organic carbon stock"})


# --------------------------------------------------------------------------------------
# GeoTIFF products
# --------------------------------------------------------------------------------------

def _block_factor(da: xr.DataArray, entry: dict, path: str) -> int:
    """Pixels per block side so blocks are about ``entry['block_degrees']`` (default 0.5°)
    but never coarser: 1 when the raster is already that coarse."""
    res = abs(float(da["x"][1] - da["x"][0]))
    target = float(entry.get("block_degrees", 0.5))
    if target <= 0:
        raise ProductError(f"{path}: block_degrees must be positive")
    return max(1, int(np.floor(target / res + 1e-9)))


def _lazy_raster(entry: dict, storage_options: dict | None, path: str,
                 factor_hint: int | None = None) -> xr.DataArray:
    """One band of a GeoTIFF, lazily, in EPSG:4326, chunked so block averages stay within
    chunks (``entry['chunk_pixels']``, default 1024, rounded to the block factor)."""
    reproject = bool(entry.get("reproject"))
    probe = io.open_geotiff(path, storage_options, chunks=None)  # metadata, no Dask
    probe = io.check_crs(probe, path, reproject=reproject)
    band = io.raster_band(probe, int(entry.get("band", 1)), path)
    factor = factor_hint or _block_factor(band, entry, path)
    chunks = io.chunks_for((band.sizes["y"], band.sizes["x"]), factor,
                           int(entry.get("chunk_pixels", 1024)))
    if probe.attrs.get("reprojected_from"):  # reprojected in memory: chunk the result
        return band.chunk(chunks).assign_attrs(block_factor=factor)
    lazy = io.open_geotiff(path, storage_options, chunks={"band": 1, **chunks})
    lazy = io.raster_band(lazy, int(entry.get("band", 1)), path)
    return lazy.astype(np.float64).assign_attrs(block_factor=factor, **lazy.attrs)


def _geotiff(entry: dict, storage_options: dict | None, reader: str, *, kind: str,
             default_units: str | None, notes: str,
             paths: list[str] | None = None) -> xr.DataArray | xr.Dataset:
    """Read one or more single-band GeoTIFFs on the same grid, average them (NaN-skipping),
    convert units, block-average (continuous data) and assemble."""
    paths = paths or [_path(entry)]
    bands = [_lazy_raster(entry, storage_options, p) for p in paths]
    first = bands[0]
    for p, b in zip(paths[1:], bands[1:], strict=True):
        if b.shape != first.shape or not np.allclose(b["x"], first["x"]) \
                or not np.allclose(b["y"], first["y"]):
            raise ProductError(f"{p}: raster grid differs from {paths[0]}")
    units_list = [_file_units(b.rename(entry.get("variable", "band")), entry, p,
                              default_units) for p, b in zip(paths, bands, strict=True)]
    units = units_list[0]
    where = f"{paths[0]}"
    label = " + ".join(paths)
    if kind == "categorical":
        field = first.astype(np.float64)
        y_edges = io.pixel_edges(first["y"].values, where, "y")
        x_edges = io.pixel_edges(first["x"].values, where, "x")
        grid, lat_order, lon_order = io.on_latlon(field, y_edges, x_edges,
                                                  entry.get("name", reader))
        classes = io.to_grid(field, grid, lat_order, lon_order)
        attrs = io.attrs_for(entry, label, CITATIONS.get(reader, entry.get("citation", "")),
                             units, notes)
        return io.assemble("categorical", classes, classes.notnull().astype(np.float64),
                           grid, attrs, {"units": units, "long_name": "class code"})
    field = xr.concat(bands, dim="map").mean("map", skipna=True) if len(bands) > 1 else first
    if kind == "flux":
        fu = parse_flux_units(units, where=where)
        if fu.per == "month":
            raise ProductError(f"{where}: a single raster in {units!r} (per month) cannot be "
                               "an annual flux")
        factor = fu.factor * (365.2425 * 86400.0 if fu.per == "s" else 1.0)
        out_units, var_attrs = FLUX_UNITS, FLUX_ATTRS
    elif reader == "soilgrids":
        factor = soc_factor(units, where=where)
        out_units = "g m-2"
        var_attrs = {"units": out_units, "long_name": "soil organic carbon stock"}
    else:
        factor, out_units, var_attrs = 1.0, units, {"units": units}
    factor *= float(entry.get("scale_factor", 1.0))
    k = int(first.attrs["block_factor"])
    mean, frac, ye, xe = io.block_average(field, k, where)
    grid, lat_order, lon_order = io.on_latlon(mean, ye, xe, entry.get("name", reader))
    value = io.to_grid(mean * factor, grid, lat_order, lon_order)
    landfrac = io.to_grid(frac, grid, lat_order, lon_order)
    attrs = io.attrs_for(
        entry, label, CITATIONS.get(reader, entry.get("citation", "")), out_units,
        f"{notes} Source units {units!r} x {factor:g} -> {out_units}; area-weighted "
        f"{k}x{k}-pixel block average (lazy, per chunk).",
        source_units=units, block_factor=k,
        landfrac_source="valid pixels of the raster (block average)",
        native_resolution_deg=abs(float(first["x"][1] - first["x"][0])))
    return io.assemble(kind, value, landfrac, grid, attrs, var_attrs)


def read_warner(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """Warner et al. (2019): the mean of its two annual Rh GeoTIFFs (1 km; methods of
    Bond-Lamberty et al. 2004 and Subke et al. 2006), g C m-2 yr-1. ``entry['path']`` is a
    list of the two files (or a dict ``{bond_lamberty: ..., subke: ...}``). Read lazily in
    Dask chunks and block-averaged on the workers (area-weighted, default 0.5°) before it
    is returned: the 1 km raster is never loaded whole."""
    raw = entry.get("path")
    if isinstance(raw, dict):
        paths = [str(v) for v in raw.values()]
    elif isinstance(raw, (list, tuple)):
        paths = [str(p) for p in raw]
    else:
        raise ProductError(f"entry {entry.get('name', 'warner')!r}: the 'warner' reader "
                           "needs 'path' as the list of its two Rh GeoTIFFs (Bond-Lamberty "
                           "2004 and Subke 2006 methods)")
    if len(paths) != 2:
        raise ProductError(f"{paths}: Warner et al. 2019 publishes two Rh maps; got "
                           f"{len(paths)} paths")
    return _geotiff(entry, storage_options, "warner", kind="flux", default_units=WARNER_UNITS,
                    notes="Warner et al. 2019, mean of the Bond-Lamberty 2004 and Subke 2006 "
                          "Rh maps.", paths=paths)


def read_soilgrids(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """SoilGrids organic carbon stock GeoTIFF (t ha-1 by default; ``units`` in the entry
    otherwise, ``scale_factor`` for integer-coded layers) → g C m-2 (1 t ha-1 = 100 g m-2),
    read lazily and block-averaged like Warner."""
    return _geotiff(entry, storage_options, "soilgrids", kind="value",
                    default_units=SOILGRIDS_UNITS, notes="SoilGrids SOC stock.")


def read_glim(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """GLiM lithology GeoTIFF: integer class codes (nodata → NaN) on the file's grid,
    never averaged: regrid with :func:`rhcloud.core.conservative.regrid_majority`. ``entry['classes']``
    (code → name) is kept in the attrs."""
    ds = _geotiff(entry, storage_options, "glim", kind="categorical", default_units="1",
                  notes="GLiM lithology classes (majority aggregation only).")
    if entry.get("classes"):
        ds.attrs["classes"] = {int(k): str(v) for k, v in entry["classes"].items()}
    return ds


def read_geotiff(entry: dict, storage_options: dict | None = None) -> xr.Dataset:
    """Any single-band EPSG:4326 GeoTIFF: ``units`` from the entry (checked against a
    units tag in the file); a carbon flux → g C m-2 yr-1, ``kind: value`` kept as is,
    ``categorical: true`` kept as class codes. Continuous rasters finer than
    ``block_degrees`` (0.5°) are block-averaged lazily."""
    return _geotiff(entry, storage_options, "geotiff", kind=_kind(entry),
                    default_units=entry.get("units"), notes="Generic GeoTIFF.")


def describe(ds: xr.Dataset) -> dict[str, Any]:
    """Short summary of a reader's output (for logs and provenance)."""
    return {k: ds.attrs.get(k) for k in ("name", "reader", "path", "kind", "units",
                                         "source_units")} | {"shape": tuple(ds.sizes.values())}
