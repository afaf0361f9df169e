"""Observation-derived Rh products, the NPP reference and the covariates: readers for their
published formats (a registry, :data:`READERS`).

The pipeline's use: the ingest stage reads, the regrid stage puts on the reference grid::

    ds = read_entry(entry, storage_options)                  # I/O: the file's own grid, lazy
    out, row = rhcloud.stages.regrid.to_reference(ds, grid)  # regrid + conservation row

``read_entry`` dispatches on ``entry["reader"]`` (see :data:`READERS`). Its output has
``lat``/``lon`` (ascending, lon in [0, 360)), ``lat_bnds``/``lon_bnds``, ``landfrac`` (0..1
where the product has data) and one of ``flux`` (g C m-2 yr-1; Rh products and NPP),
``value`` (covariates: MAT °C, MAP mm yr-1, SOC g C m-2) or ``classes`` (lithology codes);
``attrs['kind']`` says which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import xarray as xr

from rhcloud.core.conservative import land_total
from rhcloud.core.grids import cell_area
from rhcloud.products.readers import (
    read_geotiff,
    read_gimms,
    read_glim,
    read_gswp3,
    read_hashimoto,
    read_hwsd,
    read_konings,
    read_netcdf,
    read_soilgrids,
    read_warner,
)
from rhcloud.products.units import ProductError

Reader = Callable[[dict, "dict | None"], xr.Dataset]

READERS: dict[str, Reader] = {
    "warner": read_warner,
    "hashimoto": read_hashimoto,
    "konings": read_konings,
    "gswp3": read_gswp3,
    "soilgrids": read_soilgrids,
    "hwsd": read_hwsd,
    "gimms": read_gimms,
    "glim": read_glim,
    "netcdf": read_netcdf,
    "geotiff": read_geotiff,
}

FIELD_NAMES = ("flux", "value", "classes")


def read_entry(entry: dict[str, Any], storage_options: dict | None = None) -> xr.Dataset:
    """Read one config entry ``{name, reader, path, variable?, units?, categorical?, ...}``
    with its reader; ``storage_options`` are passed to fsspec for ``gs://``/``s3://`` paths.
    Raises ProductError (naming the file and the expectation) on unknown readers, missing
    files, unexpected variables or units, or a CRS other than EPSG:4326."""
    reader = entry.get("reader")
    if reader not in READERS:
        raise ProductError(f"entry {entry.get('name', '?')!r}: unknown reader {reader!r}; "
                           f"known readers are {sorted(READERS)}")
    ds = READERS[reader](entry, storage_options)
    if entry.get("name"):
        ds.attrs["name"] = entry["name"]
    return ds


def field_name(ds: xr.Dataset) -> str:
    """The data variable of a reader's output: ``flux``, ``value`` or ``classes``."""
    for name in FIELD_NAMES:
        if name in ds.data_vars:
            return name
    raise ValueError(f"dataset {ds.attrs.get('name', '?')!r} has none of {FIELD_NAMES}")


def grid_of(ds: xr.Dataset) -> xr.Dataset:
    """The grid (``rhcloud.core.grids`` form) a reader's output, or a climatology, lives on."""
    return xr.Dataset({"lat_bnds": ds["lat_bnds"], "lon_bnds": ds["lon_bnds"]},
                      coords={"lat": ds["lat"], "lon": ds["lon"]},
                      attrs={"grid_name": ds.attrs.get("grid_name") or ds.attrs.get("name", "")})


def native_total(ds: xr.Dataset) -> float:
    """Σ field·landfrac·area on the product's own grid, in Pg yr-1 for a flux in
    g m-2 yr-1 (for a covariate: the same land integral in its units × m² / 1e15)."""
    name = field_name(ds)
    return land_total(ds[name], ds["landfrac"], cell_area(grid_of(ds)))


__all__ = ["READERS", "ProductError", "field_name", "grid_of", "native_total", "read_entry"]
