"""The time axis: month lengths in every CMIP calendar, period selection, and the
calendar-aware period mean of a monthly flux.

The climatology of a dataset over years y0..y1 is the time-weighted mean

    F̄ = Σ_t w_t F_t / Σ_t w_t,   w_t = length of month t (days, from ``time_bnds``,
                                     or from the calendar when bounds are missing)

converted from kg m-2 s-1 to g C m-2 yr-1 with the calendar's own mean year length over the
period, L = Σ_t w_t / (y1 − y0 + 1) days (365 for noleap, 360 for 360_day, 365.238… for
gregorian 1990–2010): F̄ × 1000 g/kg × 86400 L s. A cell with a missing month is missing.
"""

from __future__ import annotations

import cftime
import numpy as np
import xarray as xr

from rhcloud.core.units import flux_factor
from rhcloud.errors import RhcloudError

G_PER_KG = 1000.0
SECONDS_PER_DAY = 86400.0


class PeriodError(RhcloudError):
    """The data does not cover the requested period month by month."""


def _calendar(time: xr.DataArray) -> str:
    cal = time.encoding.get("calendar") or time.attrs.get("calendar")
    if cal is None and time.size and isinstance(time.values[0], cftime.datetime):
        cal = time.values[0].calendar
    return str(cal or "standard")


def month_lengths_from_calendar(time: xr.DataArray) -> np.ndarray:
    """Length (days) of the calendar month that contains each time value."""
    cal = _calendar(time)
    vals = time.values
    starts = [cftime.datetime(t.year, t.month, 1, calendar=cal) for t in vals]
    ends = [cftime.datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, calendar=cal)
            for t in vals]
    return np.array([(e - s).total_seconds() / SECONDS_PER_DAY for s, e in zip(starts, ends, strict=True)])


def month_lengths_from_bounds(time_bnds: xr.DataArray) -> np.ndarray:
    """Length (days) of each interval of ``time_bnds`` (cftime or numeric days)."""
    b = time_bnds.values
    if b.dtype.kind in "fiu":
        return (b[:, 1] - b[:, 0]).astype(float)
    return np.array([(hi - lo).total_seconds() / SECONDS_PER_DAY for lo, hi in b])


def time_bounds(ds: xr.Dataset, time: str = "time") -> xr.DataArray | None:
    """The bounds variable of ``ds[time]`` (its ``bounds`` attribute or encoding, else
    ``time_bnds`` or ``time_bounds``), or None when the file has none."""
    t = ds[time] if time in ds.variables else None
    names = (t.attrs.get("bounds"), t.encoding.get("bounds")) if t is not None else ()
    for cand in (*names, "time_bnds", "time_bounds"):
        if cand and cand in ds.variables:
            return ds[cand]
    return None


def month_lengths(time: xr.DataArray, time_bnds: xr.DataArray | None = None) -> np.ndarray:
    """Length (days) of each time step: from ``time_bnds`` when given, else the calendar
    month holding it."""
    if time_bnds is not None:
        return month_lengths_from_bounds(time_bnds)
    return month_lengths_from_calendar(time)


def select_period(time: xr.DataArray, period: tuple[int, int]) -> np.ndarray:
    """Boolean index of the months of ``period``; PeriodError unless every month of every
    year is present exactly once."""
    y0, y1 = period
    years = np.array([t.year for t in time.values])
    months = np.array([t.month for t in time.values])
    inside = (years >= y0) & (years <= y1)
    have = set(zip(years[inside].tolist(), months[inside].tolist(), strict=True))
    want = {(y, m) for y in range(y0, y1 + 1) for m in range(1, 13)}
    if have != want or inside.sum() != len(want):
        ym = sorted(zip(years.tolist(), months.tolist(), strict=True))
        span = f"{ym[0][0]}-{ym[0][1]:02d} … {ym[-1][0]}-{ym[-1][1]:02d}" if ym else "no time steps"
        missing = len(want - have)
        raise PeriodError(f"period {y0}–{y1} not covered month by month: data spans {span}, "
                          f"{missing} of {len(want)} months missing"
                          + (f", {inside.sum() - len(have)} duplicated" if
                             inside.sum() > len(have) else ""))
    return inside


def period_mean(flux: xr.DataArray, period: tuple[int, int],
                time_bnds: xr.DataArray | None = None) -> xr.DataArray:
    """The time-weighted mean of a monthly flux over ``period`` in g C m-2 yr-1 (lazy with
    Dask; one partial sum per time chunk). ``flux`` must carry ``units`` convertible to a
    mass flux per area; attrs record months used, calendar and year length."""
    if "time" not in flux.dims:
        raise PeriodError("no time dimension")
    factor, per_year = flux_factor(flux.attrs.get("units", ""))
    inside = select_period(flux["time"], period)
    days = month_lengths(flux["time"], time_bnds)[inside]
    weights_from = "time_bnds" if time_bnds is not None else "calendar (no time_bnds)"
    if np.any(days <= 0) or np.any(days > 32):
        raise PeriodError(f"time_bnds give month lengths outside (0, 32] days: {days.min()}…"
                          f"{days.max()}")
    n_years = period[1] - period[0] + 1
    year_days = days.sum() / n_years
    w = xr.DataArray(days / days.sum(), dims="time")
    idx = np.flatnonzero(inside)
    # a contiguous period is a slice: dask then reads whole chunks without a gather step
    contiguous = idx.size and np.all(np.diff(idx) == 1)
    sel = flux.isel(time=slice(idx[0], idx[-1] + 1) if contiguous else idx)
    mean = (sel * w.assign_coords(time=sel["time"])).sum("time", skipna=False)
    if per_year:  # value per calendar year already: × kg/unit only
        to_g = factor * G_PER_KG
    else:
        to_g = factor * G_PER_KG * SECONDS_PER_DAY * year_days
    out = (mean * to_g).astype(np.float64)
    out.attrs = {
        "units": "g m-2 yr-1",
        "cell_methods": f"time: mean (weighted by month length) over {period[0]}-{period[1]}",
        "period": f"{period[0]}-{period[1]}",
        "months_used": int(inside.sum()),
        "calendar": _calendar(flux["time"]),
        "year_length_days": float(year_days),
        "time_weights": weights_from,
        "source_units": str(flux.attrs.get("units")),
    }
    return out
