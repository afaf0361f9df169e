"""Unit tests: calendar-aware period means and mass-flux units, against hand computation."""

from __future__ import annotations

import cftime
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from rhcloud.core.timeaxis import PeriodError, month_lengths_from_calendar, period_mean
from rhcloud.core.units import UnitsError, flux_factor

CALENDARS = ["noleap", "365_day", "360_day", "gregorian", "proleptic_gregorian", "all_leap"]


def monthly(calendar: str, y0: int, y1: int, values: np.ndarray, chunks=None,
            units="kg m-2 s-1", with_bounds=True) -> xr.Dataset:
    starts = [cftime.datetime(y, m, 1, calendar=calendar)
              for y in range(y0, y1 + 1) for m in range(1, 13)]
    ends = starts[1:] + [cftime.datetime(y1 + 1, 1, 1, calendar=calendar)]
    mids = [s + (e - s) / 2 for s, e in zip(starts, ends, strict=True)]
    data = da.from_array(values, chunks=chunks) if chunks else values
    ds = xr.Dataset({"rh": (("time", "lat", "lon"), data, {"units": units})},
                    coords={"time": mids})
    if with_bounds:
        ds["time_bnds"] = (("time", "bnds"), np.array([starts, ends], dtype=object).T)
    return ds


@pytest.mark.parametrize("calendar", CALENDARS)
@pytest.mark.parametrize("chunks", [None, (1, 2, 3), (7, 1, 1), (24, 2, 3)])
def test_weighted_mean_by_hand(calendar, chunks):
    rng = np.random.default_rng(1)
    values = rng.uniform(1e-9, 1e-8, size=(48, 2, 3))
    ds = monthly(calendar, 1999, 2002, values, chunks)
    out = period_mean(ds["rh"], (2000, 2001), ds["time_bnds"]).compute()
    # by hand: month lengths in days from the calendar, 2000-01 … 2001-12
    days = np.array([(cftime.datetime(2000 + (i + 1) // 12, (i + 1) % 12 + 1, 1,
                                      calendar=calendar)
                      - cftime.datetime(2000 + i // 12, i % 12 + 1, 1, calendar=calendar)).days
                     for i in range(24)], dtype=float)
    sel = values[12:36]
    mean = (sel * days[:, None, None]).sum(0) / days.sum()
    expected = mean * 1000 * 86400 * days.sum() / 2
    np.testing.assert_allclose(out.values, expected, rtol=1e-13)
    assert out.attrs["months_used"] == 24
    assert out.attrs["year_length_days"] == pytest.approx(days.sum() / 2)


def test_year_lengths():
    for cal, want in [("360_day", 360), ("noleap", 365), ("all_leap", 366)]:
        ds = monthly(cal, 2000, 2000, np.ones((12, 1, 1)))
        assert period_mean(ds["rh"], (2000, 2000), ds["time_bnds"]).attrs[
            "year_length_days"] == want
    ds = monthly("gregorian", 1990, 2010, np.ones((252, 1, 1)))
    out = period_mean(ds["rh"], (1990, 2010), ds["time_bnds"])
    assert out.attrs["year_length_days"] == pytest.approx((21 * 365 + 5) / 21)
    # a constant 1 kg m-2 s-1 integrates to 1000 g × the seconds in a mean year
    assert float(out.squeeze()) == pytest.approx(1000 * 86400 * (21 * 365 + 5) / 21, rel=1e-14)


@pytest.mark.parametrize("calendar", CALENDARS)
def test_calendar_fallback_equals_bounds(calendar):
    values = np.random.default_rng(2).uniform(size=(36, 1, 2))
    with_b = monthly(calendar, 2000, 2002, values)
    without = monthly(calendar, 2000, 2002, values, with_bounds=False)
    a = period_mean(with_b["rh"], (2000, 2002), with_b["time_bnds"])
    b = period_mean(without["rh"], (2000, 2002), None)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-14)
    assert b.attrs["time_weights"].startswith("calendar")
    leap = calendar in ("gregorian", "proleptic_gregorian", "all_leap")  # 2000 is a leap year
    want = [30, 30] if calendar == "360_day" else [31, 29 if leap else 28]
    np.testing.assert_array_equal(month_lengths_from_calendar(without.time)[:2], want)


def test_period_not_covered():
    ds = monthly("noleap", 1995, 1999, np.ones((60, 1, 1)))
    with pytest.raises(PeriodError, match="1990–2010 not covered.*1995-01 … 1999-12"):
        period_mean(ds["rh"], (1990, 2010), ds["time_bnds"])
    gap = ds.isel(time=[i for i in range(60) if i != 30])
    with pytest.raises(PeriodError, match="1 of 60 months missing"):
        period_mean(gap["rh"], (1995, 1999), gap["time_bnds"])


def test_missing_month_in_a_cell_makes_it_missing():
    values = np.ones((12, 1, 2))
    values[3, 0, 0] = np.nan
    ds = monthly("noleap", 2000, 2000, values)
    out = period_mean(ds["rh"], (2000, 2000), ds["time_bnds"]).values
    assert np.isnan(out[0, 0]) and np.isfinite(out[0, 1])


@pytest.mark.parametrize("units,factor,per_year", [
    ("kg m-2 s-1", 1.0, False),
    ("kg m-2 s-1 ", 1.0, False),
    ("g m-2 s-1", 1e-3, False),
    ("kg/m2/s", 1.0, False),
    ("g m-2 d-1", 1e-3 / 86400, False),
    ("gC m-2 day-1", 1e-3 / 86400, False),
    ("kg m-2 yr-1", 1.0, True),
    ("g m-2 yr-1", 1e-3, True),
])
def test_flux_units(units, factor, per_year):
    f, y = flux_factor(units)
    assert f == pytest.approx(factor) and y == per_year


@pytest.mark.parametrize("units", ["K", "kg m-2", "kg s-1", "m s-1", "", "kg m-2 s-1 K-1"])
def test_not_a_mass_flux(units):
    with pytest.raises(UnitsError):
        flux_factor(units)


@settings(max_examples=30, deadline=None)
@given(t_chunk=st.integers(1, 36), calendar=st.sampled_from(CALENDARS),
       seed=st.integers(0, 2**16))
def test_chunking_never_changes_the_mean(t_chunk, calendar, seed):
    values = np.random.default_rng(seed).uniform(0, 1e-8, size=(36, 2, 2))
    ref = monthly(calendar, 2000, 2002, values)
    alt = monthly(calendar, 2000, 2002, values, chunks=(t_chunk, 1, 2))
    a = period_mean(ref["rh"], (2000, 2002), ref["time_bnds"]).values
    b = period_mean(alt["rh"], (2000, 2002), alt["time_bnds"]).compute().values
    np.testing.assert_allclose(a, b, rtol=1e-13)
