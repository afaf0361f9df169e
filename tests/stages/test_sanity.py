"""Issue 13: sanity checks with a named reason, each excluding only its dataset — fx units and
physics (areacella in km², sftlf in 0–1 labelled %), fluxes with a flipped sign or zero
everywhere, tiny negatives kept and noted, extra size-1 dimensions, odd dtypes, a deleted
chunk. Every case is a copy of a small-world store (or of its fx), run beside two good
datasets whose results must be exactly those of a run without the bad copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

# the same copies as the climatology stage's bad inputs
from test_climatology_stage import _rewrite, _row

from rhcloud.config import Config
from rhcloud.stages import catalog
from rhcloud.stages.climatology import (
    MAX_NEGATIVE_LAND_SHARE,
    collect_climatologies,
)
from rhcloud.stages.ingest import EARTH_SURFACE_M2, MAX_AREA_REL_ERROR, missing_chunks

PERIOD = (1990, 1991)
BASE = "BCC-ESM1"  # a model with its own areacella and sftlf
GOOD = [("BCC-ESM1", "rh"), ("IPSL-CM6A-LR", "rh")]


@pytest.fixture(scope="module")
def selection(small_world):
    cfg = Config(catalog=str(small_world / "local-cmip6.json"), members="first")
    return catalog.select(catalog.open_catalog(cfg.catalog).df, cfg)[0]


def _scaled(var, factor, units=None):
    def mutate(ds):
        attrs = dict(ds[var].attrs)
        ds[var] = ds[var] * factor
        ds[var].attrs = {**attrs, **({"units": units} if units is not None else {})}
        return ds
    return mutate


def _zero_flux(ds):
    attrs = dict(ds["rh"].attrs)
    ds["rh"] = ds["rh"].where(ds["rh"].isnull(), 0.0)
    ds["rh"].attrs = attrs
    return ds


def _tiny_negatives(ds):
    rh = ds["rh"].values.copy()
    land = np.argwhere(np.isfinite(rh[0]) & (rh[0] > 0))[:4]
    for i, j in land:
        rh[:, i, j] = -1e-12
    ds["rh"] = ds["rh"].copy(data=rh)
    return ds


def _extra_dim(size):
    def mutate(ds):
        attrs = dict(ds["rh"].attrs)
        rh = ds["rh"].expand_dims(depth=np.arange(size, dtype=float), axis=1)
        ds = ds.drop_vars("rh").assign(rh=rh)
        ds["rh"].attrs = attrs
        return ds
    return mutate


def _bool_flux(ds):
    attrs = dict(ds["rh"].attrs)
    ds["rh"] = ds["rh"].fillna(0) > 0
    ds["rh"].attrs = attrs
    return ds


def _copy(src_url: str, dst: Path) -> Path:
    shutil.copytree(Path(src_url.removeprefix("file://")), dst)
    return dst


# case: (store kind, mutation) — the flux store ("rh") or one of the fx stores
CASES = {
    "area_km2_declared": ("areacella", _scaled("areacella", 1e-6, "km2")),
    "area_km2_labelled_m2": ("areacella", _scaled("areacella", 1e-6, "m2")),
    "sftlf_fraction_labelled_percent": ("sftlf", _scaled("sftlf", 0.01, "%")),
    "sign_flipped": ("rh", _scaled("rh", -1.0)),
    "zero_everywhere": ("rh", _zero_flux),
    "tiny_negatives": ("rh", _tiny_negatives),
    "depth_size_1": ("rh", _extra_dim(1)),
    "depth_size_3": ("rh", _extra_dim(3)),
    "boolean_flux": ("rh", _bool_flux),
}


@pytest.fixture(scope="module")
def sane(selection, small_world, tmp_path_factory):
    """(the bad-input run, {case: reason or None}, {case: its climatology or None}, the
    good-only run)."""
    tmp = tmp_path_factory.mktemp("sanity")
    base = _row(selection, BASE)
    rows = [_row(selection, m, v) for m, v in GOOD]
    case_zstore = {}
    for name, (kind, mutate) in CASES.items():
        src = base["zstore"] if kind == "rh" else base[f"{kind}_zstore"]
        path = str(_rewrite(src, tmp / f"{name}.zarr", mutate))
        column = "zstore" if kind == "rh" else f"{kind}_zstore"
        zstore = path if kind == "rh" else f"{tmp / name}-flux.zarr"
        if kind != "rh":  # a copy of the flux store too, so each case has its own zstore
            _copy(base["zstore"], Path(zstore))
        rows.append(dict(base, **{column: path, "zstore": zstore, "version": name}))
        case_zstore[name] = zstore
    # a deleted chunk inside the period (time chunk 1 holds 1990)
    deleted = _copy(base["zstore"], tmp / "deleted_chunk.zarr")
    (deleted / "rh" / "1.0.0").unlink()
    rows.append(dict(base, zstore=str(deleted), version="deleted_chunk"))
    case_zstore["deleted_chunk"] = str(deleted)
    cfg = Config(catalog=str(small_world / "local-cmip6.json"), period=PERIOD)
    result = collect_climatologies(pd.DataFrame(rows), cfg)
    good = collect_climatologies(pd.DataFrame(rows[:len(GOOD)]), cfg)
    reasons = {e.zstore: e.reason for e in result.excluded}
    clims = {c.attrs["zstore"]: c for c in result.climatologies}
    return (result, {n: reasons.get(z) for n, z in case_zstore.items()},
            {n: clims.get(z) for n, z in case_zstore.items()}, good)


@pytest.mark.parametrize("case,expected", [
    ("area_km2_labelled_m2", "areacella sums to"),
    ("sign_flipped", f"more than {MAX_NEGATIVE_LAND_SHARE:.0%} of the land is negative"),
    ("zero_everywhere", "the flux is zero on every land cell"),
    ("depth_size_3", "extra dimension 'depth' of size 3"),
    ("boolean_flux", "has dtype bool, not a number"),
    ("deleted_chunk", "chunks of rh missing from the store (first: rh/1.0.0)"),
])
def test_refused_with_its_reason(sane, case, expected):
    _, reasons, clims, _ = sane
    assert clims[case] is None
    assert reasons[case] is not None and expected in reasons[case], reasons[case]


def test_km2_mislabelled_names_the_factor(sane):
    reason = sane[1]["area_km2_labelled_m2"]
    assert "1e-06 × Earth's surface" in reason and "km2 labelled m2" in reason
    assert f"±{MAX_AREA_REL_ERROR:.0%}" in reason


def test_deleted_chunk_not_reported_as_missing_values(sane):
    assert "every cell is missing" not in sane[1]["deleted_chunk"]


@pytest.mark.parametrize("case,note", [
    ("area_km2_declared", "areacella in km2: converted to m2"),
    ("sftlf_fraction_labelled_percent", "sftlf labelled '%' but its maximum is"),
    ("depth_size_1", "size-1 dimension 'depth' dropped"),
    ("tiny_negatives", "4 land cells with negative flux"),
])
def test_kept_converted_and_said_so(sane, case, note):
    _, reasons, clims, good = sane
    assert reasons[case] is None, reasons[case]
    clim = clims[case]
    assert note in clim.attrs["notes"], clim.attrs["notes"]
    want = next(c for c in good.climatologies if c.attrs["source_id"] == BASE)
    # the fx copies were scaled in float32 (the stores' dtype): their round trip moves the
    # 7th digit; four cells set to -1e-12 move the total by their share of it
    rel = {"area_km2_declared": 1e-6, "sftlf_fraction_labelled_percent": 1e-6,
           "tiny_negatives": 1e-3, "depth_size_1": 1e-15}[case]
    assert clim.attrs["land_total_PgC_yr"] == pytest.approx(
        want.attrs["land_total_PgC_yr"], rel=rel)
    if case == "depth_size_1":
        np.testing.assert_array_equal(clim["flux"].values, want["flux"].values)


def test_tiny_negatives_kept_in_the_field(sane):
    clim = sane[2]["tiny_negatives"]
    assert "kept" in clim.attrs["notes"]
    assert (clim["flux"].values < 0).sum() == 4


def test_the_good_datasets_are_unchanged(sane):
    result, _, _, good = sane
    got = {c.attrs["zstore"]: c for c in result.climatologies}
    assert len(good.climatologies) == len(GOOD) and good.excluded == []
    for want in good.climatologies:
        xr.testing.assert_identical(got[want.attrs["zstore"]], want)
    # the bad copies are every exclusion, once each
    assert len(result.excluded) == len({e.zstore for e in result.excluded}) == 6


def test_the_worlds_own_fx_pass_the_physics(selection):
    """Every areacella of the world sums to Earth's surface within the tolerance (the check
    refuses no real grid), and every sftlf is percent."""
    seen = 0
    for z in set(selection["areacella_zstore"].dropna()):
        total = float(xr.open_zarr(z)["areacella"].sum())
        assert abs(total / EARTH_SURFACE_M2 - 1) < MAX_AREA_REL_ERROR, z
        seen += 1
    assert seen >= 10


def test_missing_chunks_of_an_intact_store(selection):
    assert missing_chunks(_row(selection, BASE)["zstore"], "rh", None)[0] == []
