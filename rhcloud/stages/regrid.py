"""Regrid stage: every climatology and every observation file onto the reference grid,
land-weighted and conservative (``rhcloud.core.conservative``), with a conservation row each.

The conservation check compares like with like: Σ flux × landfrac × cell area on the native
grid and on the reference grid, both with cell areas from bounds on the same sphere
(``rhcloud.core.grids.EARTH_RADIUS_M``). A model's own ``areacella`` may use another radius
(CNRM, IPSL: 6,371.229 km); its global total in ``tables/global_totals.csv`` keeps that
convention, which differs from the sphere's by (R_model/R)² − 1 ≤ 1e-4 — a units
convention, not a regridding error, so it is kept out of ``rel_error``. For covariates the
totals are land integrals in the field's units × m² / 1e15; categorical fields (lithology)
are aggregated by majority and have no row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from rhcloud.core import conservative, grids
from rhcloud.core.coords import find_lat_lon
from rhcloud.errors import Exclusion
from rhcloud.products import field_name, grid_of
from rhcloud.stages.ingest import GROUPS, Reads, file_exclusion
from rhcloud.storage.fieldstore import FieldStore


def reference_grid(spec: str | Path) -> xr.Dataset:
    """Resolve a grid spec: a model name, ``regular:<degrees>``, or a file path (NetCDF or
    Zarr) holding ``lat``/``lon`` (bounds optional; rebuilt from centres if absent)."""
    named = grids.named_grid(str(spec))
    if named is not None:
        return named
    path = Path(str(spec))
    if path.exists():
        return grid_from_file(path)
    return grids.model_grid(str(spec))  # raises the clear unknown-grid error


def grid_from_file(path: str | Path) -> xr.Dataset:
    """Read a rectilinear grid from a NetCDF or Zarr file; bounds rebuilt from centres when
    missing or invalid (recorded in ``attrs['bounds_note']``)."""
    path = Path(path)
    opener = xr.open_zarr if path.suffix == ".zarr" or path.is_dir() else xr.open_dataset
    with opener(path) as ds:
        lat_name, lon_name = find_lat_lon(ds)
        if lat_name is None or lon_name is None:
            raise ValueError(f"grid file {path}: no lat/lon coordinates found")

        def bounds(name: str) -> np.ndarray | None:
            b = ds[name].attrs.get("bounds")
            return np.asarray(ds[b]) if b and b in ds else None

        lat = np.asarray(ds[lat_name], dtype=float)
        lon = np.asarray(ds[lon_name], dtype=float)
        lat_b, lon_b = bounds(lat_name), bounds(lon_name)
    return grids.normalize_grid(lat, lon, lat_b, lon_b, name=path.name)


def to_reference(ds: xr.Dataset, reference: xr.Dataset, *, min_landfrac: float = 0.0,
                 method: str = "exact") -> tuple[xr.Dataset, dict[str, Any] | None]:
    """One climatology or observation file on the reference grid, computed, and its
    conservation row (None for a categorical field).

    ``ds`` holds ``lat_bnds``/``lon_bnds``, ``landfrac`` (0..1) and one of ``flux``
    (g m-2 yr-1), ``value`` (a covariate) or ``classes`` (codes). Continuous fields:
    land-weighted conservative regridding (``flux``/``value``, ``landfrac``, and for a flux
    ``flux_dropped``); classes: majority by overlap area."""
    name = field_name(ds)
    src = grid_of(ds)
    if name == "classes":
        classes = conservative.regrid_majority(ds["classes"], src, reference)
        return xr.Dataset({"classes": classes}, attrs=ds.attrs).compute(), None
    out = conservative.regrid_land_weighted(ds[name], ds["landfrac"], src, reference,
                                            min_landfrac=min_landfrac, method=method).compute()
    attrs = ds.attrs
    row = conservative.conservation_check(
        attrs.get("source_id") or attrs.get("name") or attrs.get("reader", "?"),
        attrs.get("member_id", "observation"), ds[name], ds["landfrac"], src, out, reference)
    row["variable_id"] = attrs.get("variable_id", "")
    row["ice_sheet_missing_share"] = float(attrs.get("ice_sheet_missing_share", np.nan))
    out.attrs = dict(attrs)
    if name != "flux":
        out = out.rename({"flux": name}).drop_vars("flux_dropped")
        out[name].attrs = {**ds[name].attrs, **{k: v for k, v in out[name].attrs.items()
                                                if k.startswith("regrid")}}
    return out, row


def regrid_stream(clims: Iterable[xr.Dataset], reference: xr.Dataset,
                  store: FieldStore) -> tuple[pd.DataFrame, float]:
    """Each climatology onto the reference grid as it comes, into ``store`` (nothing else is
    kept); the conservation table and the seconds spent regridding."""
    rows, spent = [], 0.0
    for clim in clims:
        t0 = time.perf_counter()
        out, row = to_reference(clim, reference)
        store.add(out)
        rows.append(row)
        spent += time.perf_counter() - t0
    return conservative.conservation_table(rows), spent


def regrid_all(clims: list[xr.Dataset], reference: xr.Dataset, *, min_landfrac: float = 0.0,
               method: str = "exact") -> tuple[list[xr.Dataset], pd.DataFrame]:
    """Every climatology on the reference grid (in memory), and the conservation table."""
    fields, rows = [], []
    for clim in clims:
        out, row = to_reference(clim, reference, min_landfrac=min_landfrac, method=method)
        fields.append(out)
        rows.append(row)
    return fields, conservative.conservation_table(rows)


@dataclass
class Observations:
    """The products, NPP reference and covariates on the reference grid, in memory, by
    name; their conservation rows and the files that failed."""

    products: dict[str, xr.Dataset] = field(default_factory=dict)
    npp: dict[str, xr.Dataset] = field(default_factory=dict)
    covariates: dict[str, xr.Dataset] = field(default_factory=dict)
    conservation: pd.DataFrame = field(default_factory=pd.DataFrame)
    excluded: list[Exclusion] = field(default_factory=list)


def observations_to_reference(reads: Reads, reference: xr.Dataset) -> Observations:
    """Gather the files read by ``rhcloud.stages.ingest.start_reads`` (on the cluster that
    read them) and put them on the reference grid; a file that fails is excluded."""
    obs = Observations()
    rows = []
    for group in GROUPS:
        named = {}
        # read once: the readers' outputs are coarse (block-averaged), and the regrid and
        # both conservation totals would otherwise each read the file again
        for entry, native in reads.gather(group):
            name = entry.get("name") or entry.get("reader", "?")
            try:
                on_ref, row = to_reference(native, reference)
            except Exception as exc:  # noqa: BLE001 - one bad file never sinks the run
                reads.excluded.append(file_exclusion(entry, exc, "regrid"))
                continue
            named[name] = on_ref
            if row is not None:  # categorical fields have no total to conserve
                row["name"] = name
                on_ref.attrs["native_total"] = row["total_native_PgC_yr"]
                rows.append(row)
        setattr(obs, group, named)
    obs.conservation = conservative.conservation_table(rows)
    obs.excluded = list(reads.excluded)
    return obs


def with_observations(conservation: pd.DataFrame, obs: Observations) -> pd.DataFrame:
    """``tables/regrid_conservation.csv``: the datasets' rows, then the observation files'."""
    return pd.concat([conservation, obs.conservation], ignore_index=True)


def to_grid(fields: xr.Dataset, names: list[str], target: xr.Dataset,
            categorical: Iterable[str] = ()) -> xr.Dataset:
    """``names`` of ``fields`` (on a grid with bounds) regridded to ``target``, computed:
    conservative means; ``categorical`` fields by majority."""
    src = fields[["lat_bnds", "lon_bnds"]]
    factors = set(categorical)
    return xr.Dataset({n: (conservative.regrid_majority(fields[n], src, target) if n in factors
                           else conservative.regrid_conservative(fields[n], src, target))
                       for n in names}).compute()
