"""Regrid stage: every 2-D climatology onto the reference grid, land-weighted and
conservative, with a conservation row per dataset.

The conservation check compares like with like: Σ flux × landfrac × cell area on the native
grid and on the reference grid, both with cell areas from bounds on the same sphere
(``rhcloud.grids.EARTH_RADIUS_M``). A model's own ``areacella`` may use another radius (CNRM,
IPSL: 6,371.229 km); its global total in ``tables/global_totals.csv`` keeps that convention,
which differs from the sphere's by (R_model/R)² − 1 ≤ 1e-4 — a units convention, not a
regridding error, so it is kept out of ``rel_error``.
"""

from __future__ import annotations

import pandas as pd
import xarray as xr

from rhcloud import regrid


def native_grid(clim: xr.Dataset) -> xr.Dataset:
    """The grid (lat, lon, bounds) a climatology is on."""
    return clim[["lat_bnds", "lon_bnds"]]


def to_reference(clim: xr.Dataset, reference: xr.Dataset, *, min_landfrac: float = 0.0,
                 method: str = "exact") -> tuple[xr.Dataset, dict]:
    """One climatology on the reference grid (``flux`` g m-2 yr-1, ``landfrac`` 0..1) and its
    conservation row."""
    src = native_grid(clim)
    out = regrid.regrid_land_weighted(clim["flux"], clim["landfrac"], src, reference,
                                      min_landfrac=min_landfrac, method=method).compute()
    out.attrs = dict(clim.attrs)
    name = clim.attrs.get("source_id") or clim.attrs.get("name", "?")
    row = regrid.conservation_check(name, clim.attrs.get("member_id", ""), clim["flux"],
                                    clim["landfrac"], src, out, reference)
    row["variable_id"] = clim.attrs.get("variable_id", "")
    return out, row


def conservation_frame(rows: list[dict]) -> pd.DataFrame:
    """The conservation table of :func:`to_reference`'s rows (variable_id after the
    contract's columns: a model has an rh and an npp row)."""
    return pd.DataFrame(rows, columns=[*regrid.CONSERVATION_COLUMNS, "variable_id"])


def regrid_all(clims: list[xr.Dataset], reference: xr.Dataset, *, min_landfrac: float = 0.0,
               method: str = "exact") -> tuple[list[xr.Dataset], pd.DataFrame]:
    """Every climatology on the reference grid (in memory), and the conservation table."""
    fields, rows = [], []
    for clim in clims:
        field, row = to_reference(clim, reference, min_landfrac=min_landfrac, method=method)
        fields.append(field)
        rows.append(row)
    return fields, conservation_frame(rows)
