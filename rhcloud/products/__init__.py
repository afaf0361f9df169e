"""Observation-derived Rh products, the NPP reference and the covariates: readers for their
published formats, and the step that puts them on the reference grid.

The pipeline's use, I/O at the edges and pure functions on xarray objects in between::

    ds = read_entry(entry, storage_options)         # I/O: the file's own grid, lazy
    out, row = to_reference(ds, dst_grid)           # pure: regrid + conservation row

``read_entry`` dispatches on ``entry["reader"]`` (see :data:`READERS`). Its output has
``lat``/``lon`` (ascending, lon in [0, 360)), ``lat_bnds``/``lon_bnds``, ``landfrac`` (0..1
where the product has data) and one of ``flux`` (g C m-2 yr-1; Rh products and NPP),
``value`` (covariates: MAT °C, MAP mm yr-1, SOC g C m-2) or ``classes`` (lithology codes);
``attrs['kind']`` says which. ``to_reference`` regrids ``flux``/``value`` with
:func:`rhcloud.regrid.regrid_land_weighted` (Σ field·landfrac·area conserved) and
``classes`` with :func:`rhcloud.regrid.regrid_majority` (never averaged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import xarray as xr

from rhcloud.products.readers import (
    read_geotiff,
    read_gimms,
    read_glim,
    read_gswp3,
    read_hashimoto,
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
    """The grid (``rhcloud.grids`` form) a reader's output lives on."""
    return xr.Dataset({"lat_bnds": ds["lat_bnds"], "lon_bnds": ds["lon_bnds"]},
                      coords={"lat": ds["lat"], "lon": ds["lon"]},
                      attrs={"grid_name": ds.attrs.get("grid_name") or ds.attrs.get("name", "")})


def native_total(ds: xr.Dataset) -> float:
    """Σ field·landfrac·area on the product's own grid, in Pg yr-1 for a flux in
    g m-2 yr-1 (for a covariate: the same land integral in its units × m² / 1e15)."""
    from rhcloud.grids import cell_area
    from rhcloud.regrid import land_total

    name = field_name(ds)
    return land_total(ds[name], ds["landfrac"], cell_area(grid_of(ds)))


def to_reference(ds: xr.Dataset, dst_grid: xr.Dataset, *, min_landfrac: float = 0.0,
                 member_id: str = "observation") -> tuple[xr.Dataset, dict[str, Any] | None]:
    """Put a reader's output on ``dst_grid``. Continuous fields: land-weighted conservative
    regridding (returns ``flux`` or ``value``, ``landfrac``, ``flux_dropped``) and the
    conservation row of ``tables/regrid_conservation.csv`` (for covariates the totals are
    land integrals in the field's units × m² / 1e15). Categorical: majority by overlap area (returns ``classes``; row None)."""
    from rhcloud import regrid

    name = field_name(ds)
    src = grid_of(ds)
    if name == "classes":
        classes = regrid.regrid_majority(ds["classes"], src, dst_grid)
        return xr.Dataset({"classes": classes}, attrs=ds.attrs), None
    out = regrid.regrid_land_weighted(ds[name], ds["landfrac"], src, dst_grid,
                                      min_landfrac=min_landfrac)
    # covariates conserve their land integral too (totals then in the field's units × m²/1e15)
    row = regrid.conservation_check(ds.attrs.get("name", ""), member_id, ds[name],
                                    ds["landfrac"], src, out, dst_grid)
    out.attrs = dict(ds.attrs)
    if name != "flux":
        out = out.rename({"flux": name}).drop_vars("flux_dropped")
        out[name].attrs = {**ds[name].attrs, **{k: v for k, v in out[name].attrs.items()
                                                if k.startswith("regrid")}}
    return out, row


__all__ = ["READERS", "ProductError", "field_name", "grid_of", "native_total",
           "read_entry", "to_reference"]
