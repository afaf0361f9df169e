"""Climatology stage: every selected dataset's 1990–2010 mean, computed on a Dask cluster.

The flow for each catalog row: open the store (``rhcloud.stages.ingest``, metadata only, many
at once in threads), build its lazy period mean (``rhcloud.core.timeaxis.period_mean``) and
submit it to the cluster, at most ``in_flight`` datasets ahead of the one being gathered;
gather them one by one, so that a dataset that fails (unreadable store, corrupt chunk, bad
values) is excluded and named while every other dataset goes on.

A climatology is an ``xr.Dataset`` on the dataset's native grid with ``flux``
(g C m-2 yr-1, NaN where there is no land), ``area`` (m²), ``landfrac`` (0..1),
``lat_bnds``/``lon_bnds``, and provenance attributes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from rhcloud.config import Config
from rhcloud.core.conservative import land_total
from rhcloud.core.coords import sorted_on_grid
from rhcloud.core.landmask import coastline_landfrac, ice_sheet_fraction
from rhcloud.core.timeaxis import PeriodError, period_mean
from rhcloud.core.units import UnitsError
from rhcloud.errors import DatasetError, Exclusion, reason_of
from rhcloud.stages.ingest import Inputs, Opened, missing_chunks, open_inputs, provenance
from rhcloud.storage.climcache import ClimatologyCache

MAX_PLAUSIBLE_G_M2_YR = 1e5  # larger values are undeclared fill values or wrong units
MAX_NAN_LAND_SHARE = 0.05  # share of land area allowed to be missing before exclusion
MAX_NEGATIVE_LAND_SHARE = 0.10  # share of land area allowed negative (more: a flipped sign)
MAX_NEGATIVE_FLUX_SHARE = 0.01  # ... and carrying more than this share of Σ|flux| × area


@dataclass
class Collected:
    """What the climatology stage used (``datasets``: each one's attributes, with its
    ``land_total_PgC_yr``) and excluded (``zstore``, ``reason``); ``climatologies`` holds
    the fields themselves only when collected in memory (:func:`collect_climatologies`)."""

    datasets: list[dict[str, Any]] = field(default_factory=list)
    climatologies: list[xr.Dataset] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    cached: int = 0  # how many climatologies came from the cache

    @property
    def excluded_frame(self) -> pd.DataFrame:
        return pd.DataFrame([e.row() for e in self.excluded], columns=["zstore", "reason"])


def lazy_climatology(opened: Opened, period: tuple[int, int]) -> xr.Dataset:
    """The lazy climatology of an opened dataset (raises DatasetError naming the store)."""
    zstore = opened.zstore
    try:
        clim = period_mean(opened.flux, period, opened.time_bnds)
    except (PeriodError, UnitsError) as exc:
        raise DatasetError(zstore, str(exc)) from exc
    grid = opened.grid
    out = xr.Dataset({"flux": sorted_on_grid(clim, grid), "lat_bnds": grid["lat_bnds"],
                      "lon_bnds": grid["lon_bnds"]})
    out["lat"].attrs = dict(grid["lat"].attrs)
    out["lon"].attrs = dict(grid["lon"].attrs)
    if opened.landfrac is not None:
        out["flux"] = out["flux"].where(opened.landfrac > 0)  # ocean stored as 0 (CanESM5) → NaN
    out["area"] = opened.area.assign_attrs(units="m2")
    if opened.landfrac is not None:
        out["landfrac"] = opened.landfrac.assign_attrs(units="1", source="sftlf")
    if opened.icefrac is not None:
        out["icefrac"] = opened.icefrac.assign_attrs(units="1", source="sftgif")
    notes = [] if opened.time_bnds is not None else ["no time_bnds: month lengths from the "
                                                     "calendar"]
    out.attrs.update(opened.attrs)
    out.attrs.update({k: v for k, v in clim.attrs.items() if k != "units"})
    out.attrs["notes"] = "; ".join(n for n in [grid.attrs.get("grid_note", ""), *opened.notes,
                                               *notes] if n)
    variable = opened.attrs["variable_id"]
    out["flux"].attrs = {"units": "g m-2 yr-1", "long_name": f"{variable} {period[0]}-"
                         f"{period[1]} mean", "cell_methods": clim.attrs["cell_methods"]}
    return out


def prepare(row: pd.Series | dict, inputs: Inputs) -> xr.Dataset:
    """Open one catalog row and build its lazy climatology."""
    return lazy_climatology(inputs.open(row), inputs.config.period)


def check_values(clim: xr.Dataset) -> None:
    """Refuse a computed climatology whose values cannot be right (names the store).

    Land left missing (NaN where the land fraction is positive) is split in two: ice-sheet
    land (cells with land ice, from ``icefrac``: sftgif or the land-ice mask of
    ``rhcloud.core.landmask``) counts as no flux, is set to 0 and its share of the land
    area recorded (``ice_sheet_missing_share``); missing land elsewhere over more than
    ``MAX_NAN_LAND_SHARE`` of the land area excludes the dataset. Negative fluxes over land
    are kept and noted."""
    zstore = clim.attrs.get("zstore", "?")
    f = np.asarray(clim["flux"].values)
    if np.isinf(f).any():
        raise DatasetError(zstore, f"{int(np.isinf(f).sum())} cells are ±inf")
    finite = f[np.isfinite(f)]
    if finite.size == 0:
        raise DatasetError(zstore, "every cell is missing (NaN) over the period")
    big = np.abs(finite) > MAX_PLAUSIBLE_G_M2_YR
    if big.any():
        raise DatasetError(zstore, f"{int(big.sum())} cells exceed {MAX_PLAUSIBLE_G_M2_YR:g} "
                                   "g m-2 yr-1 (undeclared fill values or wrong units), max "
                                   f"{np.abs(finite).max():.3g}")
    notes = [clim.attrs.get("notes", "")]
    w = (clim["area"] * clim["landfrac"]).values
    nan_land = np.isnan(f) & (w > 0)
    ice_share = 0.0
    if nan_land.any():
        ice = nan_land & (_icefrac(clim) > 0)
        ice_share = float(w[ice].sum() / w.sum())
        nan_land &= ~ice
        share = w[nan_land].sum() / w.sum()
        if share > MAX_NAN_LAND_SHARE:
            raise DatasetError(zstore, f"{share:.1%} of the land area is missing (NaN) "
                                       f"in {int(nan_land.sum())} cells outside the ice sheets"
                               + (f" (ice-sheet land missing besides: {ice_share:.1%})"
                                  if ice.any() else ""))
        if ice.any():  # no soil under an ice sheet: no flux
            clim["flux"] = clim["flux"].copy(data=np.where(ice, 0.0, f))
            notes.append(f"ice-sheet land left missing in {int(ice.sum())} cells "
                         f"({ice_share:.2%} of land area): counted as no flux")
        if nan_land.any():
            notes.append(f"{int(nan_land.sum())} land cells missing ({share:.2%} of land "
                         "area)")
    clim.attrs["ice_sheet_missing_share"] = ice_share
    clim.attrs["notes"] = "; ".join(filter(None, notes))
    check_sign(clim)


def _icefrac(clim: xr.Dataset) -> np.ndarray:
    """Land-ice fraction of each cell: the dataset's sftgif, else the land-ice mask."""
    if "icefrac" in clim:
        return np.asarray(clim["icefrac"].values)
    return ice_sheet_fraction(clim[["lat_bnds", "lon_bnds"]])


def _note(clim: xr.Dataset, note: str) -> None:
    clim.attrs["notes"] = "; ".join(filter(None, [clim.attrs.get("notes"), note]))


def check_sign(clim: xr.Dataset) -> None:
    """Refuse a flux that is zero on every land cell, or negative over more than
    ``MAX_NEGATIVE_LAND_SHARE`` of the land area carrying more than ``MAX_NEGATIVE_FLUX_SHARE``
    of the flux (a flipped sign, a wrong variable); keep
    fewer negatives (real models have small ones, NPP in deserts) and note them."""
    zstore = clim.attrs.get("zstore", "?")
    f = np.asarray(clim["flux"].values)
    w = np.asarray((clim["area"] * clim["landfrac"]).values)
    land = np.isfinite(f) & (w > 0)
    if not land.any():
        return
    if np.all(f[land] == 0):
        raise DatasetError(zstore, f"the flux is zero on every land cell ({int(land.sum())} "
                                   "cells): no data written, or a wrong variable")
    negative = land & (f < 0)
    if not negative.any():
        return
    share = w[negative].sum() / w[land].sum()
    detail = (f"{int(negative.sum())} land cells with negative flux ({share:.2%} of the land area, "
              f"min {f[negative].min():.3g} g m-2 yr-1)")
    negative_total = -float((f[negative] * w[negative]).sum())
    flux_total = float((np.abs(f[land]) * w[land]).sum())
    # material: widespread (a share of the land) and large (a share of the flux); real models'
    # tiny negatives over deserts and ice can cover a fifth of the land and weigh nothing
    if share > MAX_NEGATIVE_LAND_SHARE and negative_total > MAX_NEGATIVE_FLUX_SHARE * flux_total:
        raise DatasetError(zstore, f"{detail}: more than {MAX_NEGATIVE_LAND_SHARE:.0%} of "
                                   "the land is negative (flipped sign or wrong variable?)")
    _note(clim, f"{detail}: kept")


def finish(clim: xr.Dataset) -> xr.Dataset:
    """Checks and the land fraction fallback once the flux is computed."""
    if "landfrac" not in clim:
        clim["landfrac"] = fallback_landfrac(clim)
    clim.attrs["landfrac_source"] = clim["landfrac"].attrs.get("source", "")
    check_values(clim)
    clim.attrs["land_total_PgC_yr"] = land_total(clim["flux"], clim["landfrac"], clim["area"])
    return clim


def fallback_landfrac(clim: xr.Dataset) -> xr.DataArray:
    """The land fraction of a dataset without sftlf: the real coastline on its grid
    (``rhcloud.core.landmask``), 0 where the model has no data and the coastline gives
    less than half land (the model's own coast), so that only land the model means to
    cover can count as missing."""
    lf = coastline_landfrac(clim[["lat_bnds", "lon_bnds"]])
    missing = np.isnan(np.asarray(clim["flux"].values))
    values = np.where(missing & (lf.values < 0.5), 0.0, lf.values)
    return lf.copy(data=values)


def _value(ds: xr.Dataset, future) -> xr.Dataset | BaseException:
    """The computed dataset (its flux from ``future``, or computed here without a cluster),
    or the exception that stopped it: one dataset's failure stays its own."""
    import dask

    try:
        value = future.result() if future is not None else dask.compute(ds["flux"].data)[0]
    except Exception as exc:  # noqa: BLE001 - isolate one dataset's failure
        return exc
    return ds.assign(flux=ds["flux"].copy(data=value))


def _open(row, inputs: Inputs, cache: ClimatologyCache | None):
    """(lazy climatology or None, cache key, in the cache?) of one row, or (the exception
    that stopped it, None, False). A store whose listing fails (no such store) gets no key:
    ``prepare`` names the error."""
    key = None
    if cache is not None:
        try:
            key = cache.key(provenance(row), inputs.config.period)
        except Exception:  # noqa: BLE001 - not cacheable; opening it will say why
            key = None
        if key is not None and cache.has(key[0]):
            return None, key, True
    item = _try(prepare, row, inputs)
    return item, None if isinstance(item, BaseException) else key, False


def iter_climatologies(inputs: Inputs, into: Collected, client=None,
                       on_progress: Callable[[str], None] | None = None,
                       cache: ClimatologyCache | None = None) -> Iterator[xr.Dataset]:
    """Yield the climatology of every dataset of ``inputs`` (the ingest stage's) as it is
    finished (in selection order), recording it, and each failure with its reason, in
    ``into``.

    At most ``config.in_flight`` datasets are open at a time (their metadata read in
    ``config.open_concurrency`` threads, their climatologies submitted to the cluster as soon
    as they are open), and nothing is kept once yielded: the client's memory does not grow
    with the number of datasets. With a ``cache``, finished climatologies are read from it
    (here, one at a time) and new ones written to it as each one completes, so an
    interrupted run loses only what was in flight."""
    config, selection = inputs.config, inputs.selection
    rows = (r for _, r in selection.iterrows())  # drawn only as the window has room
    n_rows, n_opened = len(selection), 0
    lock = threading.Lock()
    t0 = time.perf_counter()
    bar = tqdm(total=n_rows, desc="climatologies", unit="dataset",
               disable=on_progress is None or not sys.stderr.isatty())

    def open_and_submit(row):
        """(lazy climatology or exception, its flux's cluster future, cache key, cached?):
        each dataset goes to the cluster as soon as its metadata is read."""
        nonlocal n_opened
        item, key, in_cache = _open(row, inputs, cache)
        future = None
        if client is not None and not in_cache and not isinstance(item, BaseException):
            future = client.compute(item["flux"].data)
        with lock:
            n_opened += 1
            done = n_opened == n_rows
        if done and on_progress:
            on_progress(f"opened {n_rows} stores in {time.perf_counter() - t0:.1f} s; "
                        "computing climatologies")
        return item, future, key, in_cache

    window: deque = deque()  # (row, thread future of open_and_submit), selection order
    # not ``with``: leaving a with-block waits for every opening thread (a stalled store can
    # hold one for minutes); interrupted, the pool is dropped without waiting and the
    # openings not yet started are cancelled
    pool = ThreadPoolExecutor(max_workers=config.open_concurrency,
                              thread_name_prefix="rhcloud-open")
    finished = False
    try:
        def fill() -> None:
            while len(window) < config.in_flight and (row := next(rows, None)) is not None:
                window.append((row, pool.submit(open_and_submit, row)))

        fill()
        while window:
            row, opening = window.popleft()  # not kept here once handed on
            item, future, key, in_cache = _interruptible(opening)
            del opening
            bar.update()
            clim = None
            if in_cache:
                clim = cache.get(key[0], checked=True)
                if clim is None:  # unreadable since it was listed: computed after all
                    item = _try(prepare, row, inputs)
                else:
                    into.cached += 1
            if clim is None:
                clim = _computed(row, item, future, key, into, cache, inputs)
            del item, future
            fill()
            if clim is not None:
                into.datasets.append(dict(clim.attrs))
                yield clim
                del clim
        finished = True
    finally:
        pool.shutdown(wait=finished, cancel_futures=True)
        bar.close()
        if cache is not None:
            cache.flush()  # what finished is written, also when the run stops here
    if cache is not None and cache.failures and on_progress:
        on_progress(f"{len(cache.failures)} climatologies could not be cached "
                    f"(first: {cache.failures[0]})")


WAIT_SLICE_S = 0.2  # how often a wait on an opening thread lets Ctrl-C through


def _interruptible(future):
    """``future.result()``, waited for in slices: a signal (Ctrl-C) handled by another
    thread does not wake a thread blocked on a lock, so an unbounded wait would never see
    the KeyboardInterrupt; between slices it is raised here."""
    while True:
        try:
            return future.result(timeout=WAIT_SLICE_S)
        except TimeoutError:
            continue


def _try(fn, *args):
    """``fn(*args)``, or the exception it raised: one dataset's failure stays its own."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        return exc


def _computed(row, item, future, key, into: Collected,
              cache: ClimatologyCache | None, inputs: Inputs | None = None
              ) -> xr.Dataset | None:
    """The finished climatology of an opened dataset (``future``: its flux on the cluster;
    None: computed here), cached; or None, its failure recorded in ``into``."""
    if isinstance(item, BaseException):
        into.excluded.append(Exclusion(str(row["zstore"]), reason_of(item), "ingest"))
        return None
    value = _value(item, future)
    if isinstance(value, BaseException):
        reason = reason_of(value)
        if not isinstance(value, DatasetError):
            reason = f"reading data failed ({reason})"
        into.excluded.append(Exclusion(str(row["zstore"]), reason, "climatology"))
        return None
    try:
        clim = finish(value)
    except Exception as exc:  # noqa: BLE001 - whatever the values hold, the dataset's own
        reason = reason_of(exc)
        if inputs is not None:
            reason = _missing_chunks_reason(row, inputs) or reason
        into.excluded.append(Exclusion(str(row["zstore"]), reason, "climatology"))
        return None
    if key is not None:
        cache.put_later(*key, clim)
    return clim


def _missing_chunks_reason(row, inputs: Inputs) -> str | None:
    """Why a dataset's values failed when chunks of its store are absent (zarr reads them
    as fill values): named as missing chunks, not as missing data."""
    variable = str(row["variable_id"])
    absent, n = missing_chunks(str(row["zstore"]), variable, inputs.config.storage_options)
    if not absent:
        return None
    return (f"{len(absent)} of {n} chunks of {variable} missing from the store (first: "
            f"{absent[0]}): deleted or never written")


def collect_climatologies(selection: pd.DataFrame, config: Config, client=None,
                          chunks: dict[str, int] | None = None,
                          on_progress: Callable[[str], None] | None = None,
                          cache: ClimatologyCache | None = None) -> Collected:
    """Every selected dataset's climatology in memory (selection order), failures excluded
    with their reason: :func:`iter_climatologies`, kept. For a few datasets (notebooks,
    tests); a run streams them instead."""
    result = Collected()
    inputs = open_inputs(selection, config, chunks, read_files=False)
    # the stream is in selection order, and fills result.datasets as it goes
    result.climatologies = list(iter_climatologies(inputs, result, client, on_progress, cache))
    return result
