"""Stage tests: catalog → ingest → climatology on the small virtual world, against the
planted truth; every archive quirk and every kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from rhcloud.stages import catalog
from rhcloud.stages.climatology import collect_climatologies
from rhcloud.world.generate import truth_key


@pytest.fixture(scope="module")
def selection(small_world):
    from rhcloud.config import Config

    cfg = Config(catalog=str(small_world / "local-cmip6.json"), members="all")
    return catalog.select(catalog.open_catalog(cfg.catalog).df, cfg)[0]


@pytest.fixture(scope="module")
def collected(selection, small_world):
    from rhcloud.config import Config

    cfg = Config(catalog=str(small_world / "local-cmip6.json"), period=(1990, 1991))
    return collect_climatologies(selection, cfg)


def _by_model(collected, model, var="rh", member=None):
    for c in collected.climatologies:
        a = c.attrs
        if a["source_id"] == model and a["variable_id"] == var and (
                member is None or a["member_id"] == member):
            return c
    raise KeyError(model)


def test_every_dataset_matches_truth(collected, selection, truth):
    assert collected.excluded == []
    assert len(collected.climatologies) == len(selection)
    calendars = set()
    for c in collected.climatologies:
        want = truth["datasets"][truth_key(c.attrs["zstore"])]["total_PgC_yr"]
        got = c.attrs["land_total_PgC_yr"]
        assert got == pytest.approx(want, rel=1e-6), c.attrs["zstore"]
        calendars.add(c.attrs["calendar"])
    assert calendars == {"365_day", "noleap", "gregorian", "proleptic_gregorian", "360_day"}


def test_climatology_conventions(collected):
    for c in collected.climatologies:
        assert c["flux"].dims == ("lat", "lon")
        assert c.attrs["months_used"] == 24
        assert np.all(np.diff(c.lat) > 0) and c.lon.min() >= 0 and c.lon.max() < 360
        assert c["flux"].attrs["units"] == "g m-2 yr-1"
        assert c.lat_bnds.shape == (c.lat.size, 2)
        for key in ("zstore", "version", "member_id", "period", "calendar"):
            assert c.attrs[key]


def test_year_length_is_the_calendars_own(collected):
    assert _by_model(collected, "UKESM1-0-LL").attrs["year_length_days"] == 360
    assert _by_model(collected, "CESM2", member="r1i1p1f1").attrs["year_length_days"] == 365
    # 1990–1991 holds no leap year
    assert _by_model(collected, "IPSL-CM6A-LR", member="r1i1p1f1").attrs[
        "year_length_days"] == 365


def test_quirk_ocean_stored_as_zero(collected, small_world):
    c = _by_model(collected, "CanESM5", member="r1i1p1f1")
    raw = xr.open_zarr(c.attrs["zstore"])["rh"].isel(time=0).values
    ocean = c["landfrac"].values == 0
    assert np.all(raw[ocean] == 0)  # the quirk is in the store
    assert np.all(np.isnan(c["flux"].values[ocean]))  # and gone after the stage


def test_quirk_longitudes_180(collected):
    c = _by_model(collected, "E3SM-1-1-ECA")
    raw = xr.open_zarr(c.attrs["zstore"])
    assert float(raw.lon.min()) < 0
    assert float(c.lon[0]) == 0.5 and float(c.lon[-1]) == 359.5
    assert "longitudes shifted" in c.attrs["notes"]
    # the same physical cell: 10.5°E is 10.5 in both conventions, 200.5°E is -159.5
    for lon_in, lon_out in ((10.5, 10.5), (-159.5, 200.5)):
        raw_mean = raw["rh"].sel(lon=lon_in).isel(lat=120).sel(
            time=slice("1990", "1991")).values
        assert np.isfinite(c["flux"].sel(lon=lon_out).isel(lat=120)) == np.all(
            np.isfinite(raw_mean))


def test_quirk_run_past_2014_and_fx_elsewhere(collected):
    nor = _by_model(collected, "NorCPM1")
    assert nor.attrs["months_used"] == 24  # only the period, though the run goes on
    ukesm = _by_model(collected, "UKESM1-0-LL", member="r2i1p1f2")
    assert "piControl" in ukesm.attrs["fx_note"]
    bcc = _by_model(collected, "BCC-CSM2-MR")
    assert "areas from cell bounds" in bcc.attrs["fx_note"]
    assert bcc.attrs["landfrac_source"].startswith("coastline")


def test_quirk_two_versions_newest_used(collected, truth):
    miroc = _by_model(collected, "MIROC-ES2L")
    assert miroc.attrs["version"] == "20190601"
    old = [v for v in truth["datasets"].values() if v["superseded"]]
    assert len(old) == 1 and old[0]["total_PgC_yr"] != pytest.approx(
        miroc.attrs["land_total_PgC_yr"], rel=1e-3)


@pytest.mark.parametrize("chunks", [{"time": 5}, {"time": 24, "lat": 50}, {"time": -1}])
def test_chunking_independence(selection, small_world, collected, chunks):
    from rhcloud.config import Config

    cfg = Config(catalog=str(small_world / "local-cmip6.json"), period=(1990, 1991))
    sub = selection[selection.source_id.isin(["UKESM1-0-LL", "CNRM-ESM2-1", "E3SM-1-1-ECA"])]
    other = collect_climatologies(sub, cfg, chunks=chunks)
    assert len(other.climatologies) == len(sub)
    for c in other.climatologies:
        ref = _by_model(collected, c.attrs["source_id"], c.attrs["variable_id"],
                        c.attrs["member_id"])
        np.testing.assert_allclose(c["flux"].values, ref["flux"].values, rtol=1e-12)


# ---------------------------------------------------------------------------- bad input


def _copy_store(src_url: str, dst: Path) -> Path:
    src = Path(src_url.removeprefix("file://"))
    shutil.copytree(src, dst)
    return dst


def _rewrite(src_url: str, dst: Path, mutate) -> Path:
    ds = xr.open_zarr(src_url, decode_times=False).load()
    ds = mutate(ds)
    for v in ds.variables.values():
        v.encoding.pop("chunks", None)
        v.encoding.pop("preferred_chunks", None)
    ds.to_zarr(dst, zarr_format=2, consolidated=True, mode="w")
    return dst


def _row(selection, model, var="rh", **changes):
    row = selection[(selection.source_id == model) & (selection.variable_id == var)].iloc[0]
    return {**row.to_dict(), **changes}


def _set_units(units, scale):
    def mutate(ds):
        ds["rh"] = ds["rh"] * scale
        ds["rh"].attrs["units"] = units
        return ds
    return mutate


def _drop_time_bnds(ds):
    ds = ds.drop_vars("time_bnds")
    ds["time"].attrs.pop("bounds", None)
    return ds


def _put(value, where="land"):
    def mutate(ds):
        rh = ds["rh"].values
        land = np.isfinite(rh[0])
        idx = np.argwhere(land)[:3] if where == "land" else np.argwhere(land)[::3]
        for i, j in idx:
            rh[:, i, j] = value
        ds["rh"] = ds["rh"].copy(data=rh)
        ds["rh"].encoding = {"_FillValue": None}
        return ds
    return mutate


def _shorten(ds):
    return ds.isel(time=slice(0, 18))


@pytest.fixture(scope="module")
def bad_inputs(selection, small_world, tmp_path_factory):
    """A selection of good datasets plus one broken copy per kind of bad input."""
    from rhcloud.config import Config

    tmp = tmp_path_factory.mktemp("bad")
    base = _row(selection, "BCC-ESM1")
    cases = {
        "units_K": _rewrite(base["zstore"], tmp / "k.zarr", _set_units("K", 1.0)),
        "units_g_per_day": _rewrite(base["zstore"], tmp / "gd.zarr",
                                    _set_units("g m-2 d-1", 1000 * 86400)),
        "no_time_bnds": _rewrite(base["zstore"], tmp / "ntb.zarr", _drop_time_bnds),
        "inf": _rewrite(base["zstore"], tmp / "inf.zarr", _put(np.inf)),
        "fill": _rewrite(base["zstore"], tmp / "fill.zarr", _put(1e20)),
        "nan_land": _rewrite(base["zstore"], tmp / "nan.zarr", _put(np.nan, where="a third of land")),
        "short": _rewrite(base["zstore"], tmp / "short.zarr", _shorten),
        "corrupt": _copy_store(base["zstore"], tmp / "corrupt.zarr"),
        "missing": tmp / "does-not-exist.zarr",
    }
    chunk = sorted((cases["corrupt"] / "rh").glob("1.*"))[0]
    chunk.write_bytes(b"\x00garbage" * 100)
    rows = [_row(selection, "BCC-ESM1"), _row(selection, "IPSL-CM6A-LR")]
    rows += [dict(base, zstore=str(path), version=name) for name, path in cases.items()]
    cfg = Config(catalog=str(small_world / "local-cmip6.json"), period=(1990, 1991))
    result = collect_climatologies(pd.DataFrame(rows), cfg)
    reasons = {r.zstore: r.reason for r in result.excluded}
    return result, {name: reasons.get(str(path)) for name, path in cases.items()}, cases


@pytest.mark.parametrize("case,expected", [
    ("units_K", "not a carbon mass flux"),
    ("inf", "±inf"),
    ("fill", "undeclared fill values"),
    ("nan_land", "of the land area is missing"),
    ("short", "not covered"),
    ("corrupt", "reading data failed"),
    ("missing", "cannot open store"),
])
def test_bad_input_excluded_with_reason(bad_inputs, case, expected):
    _, reasons, _ = bad_inputs
    assert reasons[case] is not None and expected in reasons[case], reasons[case]


def test_bad_inputs_lose_nothing_else(bad_inputs, collected, truth):
    result, reasons, cases = bad_inputs
    used = {c.attrs["version"]: c for c in result.climatologies}
    assert set(used) == {"20190601", "units_g_per_day", "no_time_bnds"}
    want = _by_model(collected, "BCC-ESM1").attrs["land_total_PgC_yr"]
    assert used["units_g_per_day"].attrs["land_total_PgC_yr"] == pytest.approx(want, rel=1e-6)
    assert used["no_time_bnds"].attrs["land_total_PgC_yr"] == pytest.approx(want, rel=1e-12)
    assert "month lengths from the calendar" in used["no_time_bnds"].attrs["notes"]
    assert sum(c.attrs["source_id"] == "IPSL-CM6A-LR" for c in result.climatologies) == 1


def test_world_quirks_from_real_data_are_met(collected, small_world, truth):
    """The world's quirks of issue 12, each present in the stores and met: IPSL-CM6A-LR
    leaves its ice sheets missing (sftlf 100 %), UKESM1-0-LL stores tiny negative fluxes,
    NorESM2-LM declares its fill -1e20 only as missing_value."""
    ipsl = _by_model(collected, "IPSL-CM6A-LR")
    raw = xr.open_zarr(ipsl.attrs["zstore"].removeprefix("file://"))["rh"].isel(time=0)
    sftlf = xr.open_zarr(ipsl.attrs["sftlf_zstore"].removeprefix("file://"))["sftlf"]
    assert int((raw.isnull() & (sftlf == 100)).sum()) > 100  # missing where all land
    assert ipsl.attrs["ice_sheet_missing_share"] > 0.08
    assert "ice-sheet land left missing" in ipsl.attrs["notes"]
    uk = _by_model(collected, "UKESM1-0-LL")
    assert np.nanmin(uk["flux"].values) == pytest.approx(-0.075, rel=1e-4)
    assert "negative flux" in uk.attrs["notes"]
    nor = _by_model(collected, "NorESM2-LM")
    meta = xr.open_zarr(nor.attrs["zstore"].removeprefix("file://"), mask_and_scale=False)
    assert meta["rh"].attrs["missing_value"] == pytest.approx(-1e20)
    assert "_FillValue" not in meta["rh"].attrs
    assert float(meta["rh"].isel(time=0).min()) == pytest.approx(-1e20)
    assert np.nanmin(nor["flux"].values) >= 0.0  # read as missing, not as -1e20
    for c in (ipsl, uk, nor):  # none excluded, totals as planted
        want = truth["datasets"][truth_key(c.attrs["zstore"])]["total_PgC_yr"]
        assert c.attrs["land_total_PgC_yr"] == pytest.approx(want, rel=1e-6)


def test_hashimoto_has_two_fill_values_and_nonstandard_units(small_world):
    import netCDF4

    obs = json.loads((small_world / "observations" / "observations.json").read_text())
    path = next(e["path"] for e in obs["products"] if e["name"] == "hashimoto2015")
    with netCDF4.Dataset(path) as nc:
        v = nc["rh"]
        assert v.units == "gC/m2/month"
        assert {float(v._FillValue), float(v.missing_value)} == {float(np.float32(1e20)),
                                                                -9999.0}


def test_bcc_esm1_without_fx_totals_within_two_percent(selection, small_world):
    from rhcloud.config import Config

    rows = selection[(selection["source_id"] == "BCC-ESM1")
                     & (selection["variable_id"] == "rh")]
    no_fx = rows.assign(areacella_zstore=None, sftlf_zstore=None)
    cfg = Config(catalog=str(small_world / "local-cmip6.json"), period=(1990, 1991))
    with_fx = collect_climatologies(rows, cfg).climatologies[0]
    without = collect_climatologies(no_fx, cfg).climatologies[0]
    assert without.attrs["landfrac_source"].startswith("coastline")
    a, b = with_fx.attrs["land_total_PgC_yr"], without.attrs["land_total_PgC_yr"]
    assert abs(b - a) / a < 0.02
