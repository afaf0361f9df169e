"""Ingest stage: open CMIP6 Zarr stores lazily (local, ``gs://``, ``s3://`` through fsspec)
with their fx fields, and start reading the observation files.

A dataset comes out of here on the project's conventions: 1-D ``lat``/``lon`` axes named so,
the grid it is on (``lat`` ascending, ``lon`` in [0, 360), valid bounds; see
``rhcloud.core.grids.normalize_grid``), ``time`` decoded with cftime in the dataset's own
calendar, its cell area (m²) and land fraction (0..1). Errors name the store (``zstore``) and
what is wrong. Nothing here computes data: the climatology stage does, on the cluster.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from rhcloud import products
from rhcloud.config import Config
from rhcloud.core import grids
from rhcloud.core.coords import find_lat_lon, wrapped_sorted
from rhcloud.core.timeaxis import time_bounds
from rhcloud.errors import DatasetError, Exclusion
from rhcloud.storage.paths import storage_options_for

__all__ = ["DatasetError", "FxCache", "Inputs", "Opened", "Reads", "load_fx", "open_dataset",
           "open_inputs", "open_store", "provenance", "start_reads"]


def open_store(zstore: str, storage_options: dict[str, Any] | None = None,
               chunks: dict[str, int] | None = None) -> xr.Dataset:
    """Open a Zarr store lazily with Dask, keeping the store's own chunks (``chunks={}``)
    unless others are given; times decoded with cftime in every calendar."""
    # a file:// URL opened as a plain path: zarr's LocalStore, not an fsspec wrapper (which
    # fsspec caches per store, for the life of the process)
    try:
        ds = xr.open_zarr(
            zstore.removeprefix("file://"),
            storage_options=storage_options_for(zstore, storage_options),
            consolidated=None,
            chunks={} if chunks is None else chunks,
            decode_times=xr.coders.CFDatetimeCoder(use_cftime=True),
        )
    except Exception as exc:  # any failure to open is this dataset's failure, named
        raise DatasetError(zstore, f"cannot open store ({type(exc).__name__}: {exc})") from exc
    for dim in ("dcpp_init_year", "member_id"):
        if dim in ds.dims and ds.sizes[dim] == 1:
            ds = ds.squeeze(dim, drop=True)
    return ds


def rename_lat_lon(ds: xr.Dataset | xr.DataArray, zstore: str):
    """``ds`` with its latitude/longitude axes named ``lat``/``lon`` (1-D only)."""
    lat, lon = find_lat_lon(ds)
    if lat is None or lon is None:
        raise DatasetError(zstore, f"no latitude/longitude coordinates (dims {tuple(ds.dims)})")
    if ds[lat].ndim != 1 or ds[lon].ndim != 1:
        raise DatasetError(zstore, "curvilinear grids (2-D lat/lon) are not supported")
    rename = {k: v for k, v in ((lat, "lat"), (lon, "lon")) if k != v}
    return ds.rename(rename) if rename else ds


def _bounds_of(ds: xr.Dataset, coord: str) -> np.ndarray | None:
    name = ds[coord].attrs.get("bounds")
    for cand in (name, f"{coord}_bnds", f"{coord}_bounds"):
        if cand and cand in ds.variables and ds[cand].ndim == 2:
            return np.asarray(ds[cand].values, dtype=float)
    return None


def native_grid(source: xr.Dataset, zstore: str) -> xr.Dataset:
    """The grid a store's data are on, in the project's conventions (``source`` with
    ``lat``/``lon`` axes); ``attrs['grid_note']`` records bounds rebuilt from centres or
    longitudes shifted."""
    grid = grids.normalize_grid(source["lat"].values, source["lon"].values,
                                _bounds_of(source, "lat"), _bounds_of(source, "lon"),
                                name=zstore)
    notes = [grid.attrs["bounds_note"]] if "bounds_note" in grid.attrs else []
    if np.any(np.asarray(source["lon"], dtype=float) < 0):
        notes.append("longitudes shifted from [-180, 180) to [0, 360)")
    grid.attrs["grid_note"] = "; ".join(notes)
    return grid


EARTH_SURFACE_M2 = 4 * np.pi * grids.EARTH_RADIUS_M ** 2
MAX_AREA_REL_ERROR = 0.01  # Σ areacella against Earth's surface (global grid) or the grid's
AREA_UNITS = {"m2": 1.0, "m^2": 1.0, "m**2": 1.0, "km2": 1e6, "km^2": 1e6, "km**2": 1e6}
PERCENT_UNITS = ("%", "percent")
FRACTION_UNITS = ("1", "", "fraction", "0-1")
MAX_PERCENT_AS_FRACTION = 1.0  # a '%' land fraction whose maximum is ≤ this is a fraction


def _area_m2(zstore: str, values: np.ndarray, units: str, grid: xr.Dataset) -> tuple[
        np.ndarray, list[str]]:
    """``areacella`` in m² (``km2`` converted), checked against physics: its sum within
    ``MAX_AREA_REL_ERROR`` of Earth's surface for a global grid (of the grid's own area from
    its bounds otherwise), no negative cell. A km² field labelled ``m2`` fails here."""
    notes = []
    key = units.strip().replace(" ", "")
    if key not in AREA_UNITS:
        raise DatasetError(zstore, f"areacella units {units!r}: expected 'm2' (or 'km2')")
    if AREA_UNITS[key] != 1.0:
        values = values * AREA_UNITS[key]
        notes.append(f"areacella in {units.strip()}: converted to m2")
    finite = np.isfinite(values)
    if not finite.any():
        raise DatasetError(zstore, "areacella has no finite value")
    if (values[finite] < 0).any():
        raise DatasetError(zstore, f"areacella has {int((values[finite] < 0).sum())} negative "
                                   "cell areas")
    total = float(values[finite].sum())
    geometric = float(grids.cell_area(grid).sum())
    is_global = abs(geometric / EARTH_SURFACE_M2 - 1) <= MAX_AREA_REL_ERROR
    want, what = (EARTH_SURFACE_M2, "Earth's surface") if is_global else (
        geometric, "the area its grid's bounds enclose")
    if abs(total / want - 1) > MAX_AREA_REL_ERROR:
        raise DatasetError(zstore, f"areacella sums to {total:.4g} m2, {total / want:.3g} × "
                                   f"{what} ({want:.4g} m2; allowed ±"
                                   f"{MAX_AREA_REL_ERROR:.0%}): wrong units (km2 labelled "
                                   "m2?) or a wrong field")
    return values, notes


def _landfrac(zstore: str, values: np.ndarray, units: str) -> tuple[np.ndarray, list[str]]:
    """``sftlf`` as a fraction (0..1): ``%`` divided by 100, except a ``%`` field whose
    maximum is ≤ 1, which is a fraction mislabelled (read as one, and said so); a fraction
    labelled ``1`` whose maximum exceeds 1 is percent mislabelled (likewise)."""
    notes = []
    units = units.strip()
    finite = values[np.isfinite(values)]
    vmax = float(finite.max()) if finite.size else float("nan")
    if not finite.size or vmax <= 0:
        raise DatasetError(zstore, "sftlf is zero or missing everywhere: no land")
    if (finite < 0).any():
        raise DatasetError(zstore, f"sftlf has negative values (min {finite.min():.3g})")
    if units in PERCENT_UNITS:
        if vmax <= MAX_PERCENT_AS_FRACTION:
            notes.append(f"sftlf labelled '%' but its maximum is {vmax:.3g} ≤ "
                         f"{MAX_PERCENT_AS_FRACTION:g}: read as a fraction")
        else:
            values = values / 100.0
    elif units in FRACTION_UNITS:
        if vmax > 1.0 + 1e-6:
            notes.append(f"sftlf labelled {units!r} but its maximum is {vmax:.3g} > 1: read "
                         "as percent")
            values = values / 100.0
    else:
        raise DatasetError(zstore, f"sftlf units {units!r}: expected '%' or '1'")
    if np.nanmax(values) > 1.0 + 1e-6:
        raise DatasetError(zstore, f"sftlf exceeds 100 % (max {vmax:.3g} {units})")
    return np.where(np.isfinite(values), np.clip(values, 0.0, 1.0), 0.0), notes


def load_fx(zstore: str, variable: str, storage_options: dict[str, Any] | None,
            grid: xr.Dataset) -> xr.DataArray:
    """Read an fx variable (``areacella`` m², ``sftlf`` or ``sftgif`` %) onto ``grid``'s
    (lat, lon) order, its units read and converted and its values checked against physics
    (``_area_m2``, ``_landfrac``); ``attrs['note']`` says what was converted or reinterpreted.

    ``sftlf`` and ``sftgif`` are returned as fractions (0..1). Raises DatasetError when it
    does not fit."""
    ds = open_store(zstore, storage_options)
    if variable not in ds:
        raise DatasetError(zstore, f"no variable {variable!r} (has {sorted(ds.data_vars)})")
    da = rename_lat_lon(ds[variable], zstore)
    da = _squeezed(da, zstore, keep=("lat", "lon"))[0]
    da = wrapped_sorted(da)
    if da.shape != (grid.sizes["lat"], grid.sizes["lon"]) or not (
        np.allclose(da["lat"], grid["lat"], atol=1e-4) and np.allclose(da["lon"], grid["lon"],
                                                                       atol=1e-4)):
        raise DatasetError(zstore, f"{variable} grid {da.shape} does not match the data's grid "
                                   f"{(grid.sizes['lat'], grid.sizes['lon'])}")
    _numeric(da, variable, zstore)
    values = np.asarray(da.values, dtype=float)
    if variable == "sftlf":
        values, notes = _landfrac(zstore, values, str(ds[variable].attrs.get("units", "%")))
    elif variable == "sftgif":  # land ice: where missing land means no soil, not a fault
        units, notes = str(ds[variable].attrs.get("units", "%")).strip(), []
        if units in ("%", "percent"):
            values = values / 100.0
        elif units not in ("1", "", "fraction"):
            raise DatasetError(zstore, f"sftgif units {units!r}: expected '%' or '1'")
        values = np.where(np.isfinite(values), np.clip(values, 0.0, 1.0), 0.0)
    else:
        values, notes = _area_m2(zstore, values, str(ds[variable].attrs.get("units", "m2")),
                                 grid)
    attrs = {"units": "1" if variable in ("sftlf", "sftgif") else "m2", "zstore": zstore}
    if notes:
        attrs["note"] = "; ".join(notes)
    return xr.DataArray(values, dims=("lat", "lon"),
                        coords={"lat": grid["lat"].values, "lon": grid["lon"].values},
                        attrs=attrs)


def _squeezed(da: xr.DataArray, zstore: str, keep: tuple[str, ...]) -> tuple[
        xr.DataArray, list[str]]:
    """``da`` without its extra size-1 dimensions (a ``depth`` or ``type`` axis of one
    level: dropped, and said so); an extra dimension of several values is refused."""
    notes = []
    for dim in [d for d in da.dims if d not in keep]:
        if da.sizes[dim] != 1:
            raise DatasetError(zstore, f"{da.name} has an extra dimension {dim!r} of size "
                                       f"{da.sizes[dim]} (expected {', '.join(keep)})")
        da = da.squeeze(dim, drop=True)
        notes.append(f"size-1 dimension {dim!r} dropped")
    return da, notes


def _numeric(da: xr.DataArray, variable: str, zstore: str) -> None:
    if not (np.issubdtype(da.dtype, np.floating) or np.issubdtype(da.dtype, np.integer)):
        raise DatasetError(zstore, f"{variable} has dtype {da.dtype}, not a number")


def missing_chunks(zstore: str, variable: str,
                   storage_options: dict[str, Any] | None) -> tuple[list[str], int]:
    """(chunk objects of ``variable`` absent from a Zarr v2 store, number expected): zarr
    reads an absent chunk as fill values, so a deleted chunk looks like missing data.
    ([], 0) when it cannot tell (Zarr v3, no listing)."""
    import itertools
    import json

    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(zstore, **(storage_options_for(zstore,
                                                                         storage_options) or {}))
        root = root.rstrip("/")
        meta = json.loads(fs.cat(f"{root}/{variable}/.zarray"))
        grid = [range(-(-n // c)) for n, c in zip(meta["shape"], meta["chunks"], strict=True)]
        sep = meta.get("dimension_separator", ".")
        n = int(np.prod([len(r) for r in grid]))
        if n > 1_000_000:
            return [], 0
        present = {p[len(root) + 1:] for p in fs.find(f"{root}/{variable}")}
    except Exception:  # noqa: BLE001 - a diagnosis only: no answer rather than a new failure
        return [], 0
    want = (f"{variable}/" + sep.join(str(i) for i in idx) for idx in itertools.product(*grid))
    return [k for k in want if k not in present], n


class FxCache:
    """fx fields are shared by all members of a model: read each store once."""

    def __init__(self, storage_options: dict[str, Any] | None):
        self._opts = storage_options
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._data: dict[tuple[str, str], xr.DataArray] = {}

    def get(self, zstore: str, variable: str, grid: xr.Dataset) -> xr.DataArray:
        key = (zstore, variable)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        # one reader per store: the members opened at the same time wait for it
        with key_lock:
            if key not in self._data:
                self._data[key] = load_fx(zstore, variable, self._opts, grid)
            return self._data[key]


def given(value: Any) -> bool:
    """A catalog cell that holds a value (not None, NaN or empty)."""
    return value is not None and not (isinstance(value, float) and np.isnan(value)) \
        and str(value) != ""


def provenance(row: pd.Series | dict) -> dict[str, str]:
    """The attributes that identify a dataset everywhere (logs, caches, reports)."""
    keys = ("zstore", "version", "source_id", "member_id", "variable_id", "grid_label",
            "experiment_id", "table_id", "areacella_zstore", "sftlf_zstore", "sftgif_zstore", "fx_note")
    return {k: str(row.get(k)) if given(row.get(k)) else "" for k in keys}


@dataclass
class Opened:
    """One dataset, opened lazily: its monthly ``flux`` (native units, ``lat``/``lon`` axes
    in the store's order), ``time_bnds`` (None: month lengths from the calendar), the
    ``grid`` it is on, its cell ``area`` (m²), ``landfrac`` (0..1; None without sftlf) and
    ``icefrac`` (land ice, 0..1; None without sftgif) on that grid, and its provenance
    ``attrs``."""

    flux: xr.DataArray
    time_bnds: xr.DataArray | None
    grid: xr.Dataset
    area: xr.DataArray
    landfrac: xr.DataArray | None
    attrs: dict[str, str]
    icefrac: xr.DataArray | None = None
    notes: list[str] = field(default_factory=list)  # what ingest converted or dropped

    @property
    def zstore(self) -> str:
        return self.attrs["zstore"]


def open_dataset(row: pd.Series | dict, config: Config, fx: FxCache,
                 chunks: dict[str, int] | None = None) -> Opened:
    """Open one catalog row's store and its fx (metadata and fx values only; raises
    DatasetError naming the store)."""
    zstore = str(row["zstore"])
    variable = str(row["variable_id"])
    ds = open_store(zstore, config.storage_options, chunks)
    if variable not in ds:
        raise DatasetError(zstore, f"no variable {variable!r} in the store "
                                   f"(has {sorted(ds.data_vars)})")
    ds = rename_lat_lon(ds, zstore)
    flux, notes = _squeezed(ds[variable], zstore, keep=("time", "lat", "lon"))
    if "time" not in flux.dims:
        raise DatasetError(zstore, f"{variable} has no time dimension (dims {flux.dims})")
    _numeric(flux, variable, zstore)
    grid = native_grid(ds, zstore)
    bounds = grid[["lat_bnds", "lon_bnds"]]
    fx_notes = []
    if given(row.get("areacella_zstore")):
        area = fx.get(str(row["areacella_zstore"]), "areacella", bounds)
        fx_notes.append(area.attrs.get("note", ""))
    else:
        area = grids.cell_area(bounds)
    landfrac = fx.get(str(row["sftlf_zstore"]), "sftlf", bounds) \
        if given(row.get("sftlf_zstore")) else None
    if landfrac is not None:
        fx_notes.append(landfrac.attrs.get("note", ""))
    icefrac = fx.get(str(row["sftgif_zstore"]), "sftgif", bounds) \
        if given(row.get("sftgif_zstore")) else None
    return Opened(flux, time_bounds(ds) if "time" in ds.variables else None, grid,
                  area, landfrac, provenance(row), icefrac, [*notes, *filter(None, fx_notes)])


@dataclass
class Inputs:
    """What the ingest stage hands the climatology stage: the selected catalog rows, each
    opened lazily on demand (:meth:`open`: the climatology stage opens them many at a time,
    as its window has room), and the observation files, already being read."""

    selection: pd.DataFrame
    config: Config
    fx: FxCache
    reads: Reads
    chunks: dict[str, int] | None = None

    def open(self, row: pd.Series | dict) -> Opened:
        return open_dataset(row, self.config, self.fx, self.chunks)


def open_inputs(selection: pd.DataFrame, config: Config, chunks: dict[str, int] | None = None,
                *, read_files: bool = True) -> Inputs:
    """The ingest stage: the selected stores ready to open (fx read once per store) and,
    with ``read_files``, every product and covariate file read on the cluster
    (:func:`start_reads`) while the climatologies compute."""
    return Inputs(selection, config, FxCache(config.storage_options),
                  start_reads(config) if read_files else Reads(), chunks)


# ----------------------------------------------------------------------------------------
# observation files: products, the NPP reference, covariates
# ----------------------------------------------------------------------------------------

GROUPS = ("products", "npp", "covariates")


def file_exclusion(entry: dict[str, Any], exc: BaseException,
                   stage: str = "ingest") -> Exclusion:
    """The exclusion of an observation file (named by its path) that ``stage`` could not use."""
    name = entry.get("name") or entry.get("reader", "?")
    return Exclusion(str(entry.get("path", name)),
                     f"{name}: {type(exc).__name__}: {exc}", stage)


@dataclass
class Reads:
    """The products', NPP reference's and covariates' reader outputs (entry, Dataset) on
    their own grids, persisted (on the cluster when a client is active, so they are read
    while the climatologies compute), and the files that could not be opened."""

    products: list[tuple[dict, xr.Dataset]] = field(default_factory=list)
    npp: list[tuple[dict, xr.Dataset]] = field(default_factory=list)
    covariates: list[tuple[dict, xr.Dataset]] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)

    def gather(self, group: str) -> list[tuple[dict, xr.Dataset]]:
        """The ``group``'s files, computed here; a file that fails is excluded."""
        out = []
        for entry, ds in getattr(self, group):
            try:
                out.append((entry, ds.compute()))
            except Exception as exc:  # noqa: BLE001 - one bad file never sinks the run
                self.excluded.append(file_exclusion(entry, exc))
        return out


def start_reads(config: Config) -> Reads:
    """Open every product and covariate file of ``config`` and persist the readers' outputs
    all at once; a file that cannot be opened is excluded, the others go on."""
    import dask

    reads = Reads()
    groups = {"products": list(config.products),
              "npp": [config.npp_reference] if config.npp_reference else [],
              "covariates": [{**e, "name": n} for n, e in config.covariates.items()]}
    for group, entries in groups.items():
        for entry in entries:
            try:
                getattr(reads, group).append(
                    (entry, products.read_entry(entry, config.storage_options)))
            except Exception as exc:  # noqa: BLE001 - one bad file never sinks the run
                reads.excluded.append(file_exclusion(entry, exc))
    lazy = [*reads.products, *reads.npp, *reads.covariates]
    # one persist for all (read in parallel); each is then gathered on its own so that a
    # failing file is its own failure. (A single dask.compute over several readers'
    # Datasets is cancelled with "lost dependencies" by distributed 2026.8; persist is not.)
    persisted = iter(dask.persist(*[ds for _, ds in lazy]))
    for group in groups:
        setattr(reads, group, [(e, next(persisted)) for e, _ in getattr(reads, group)])
    return reads
