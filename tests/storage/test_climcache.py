"""Resumable runs: climatologies cached in Zarr, keyed by store, version, period and the
store's objects; a rerun, an interrupted run and a changed input recompute only what they must."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from rhcloud.config import Config, ConfigError
from rhcloud.stages import catalog
from rhcloud.stages import climatology as collect
from rhcloud.stages.climatology import collect_climatologies
from rhcloud.storage.climcache import ClimatologyCache, store_fingerprint

MODELS = ["BCC-ESM1", "CanESM5", "IPSL-CM6A-LR", "MIROC-ES2L"]


@pytest.fixture
def copied(small_world, tmp_path):
    """A selection of rh datasets whose stores are private copies (safe to modify)."""
    cfg = Config(catalog=str(small_world / "local-cmip6.json"), period=(1990, 1991),
                 models=MODELS, variables=["rh"])
    sel = catalog.select(catalog.open_catalog(cfg.catalog).df, cfg)[0].reset_index(drop=True)
    for i, row in sel.iterrows():
        dst = tmp_path / "stores" / f"{row['source_id']}.zarr"
        shutil.copytree(row["zstore"].removeprefix("file://"), dst)
        sel.loc[i, "zstore"] = str(dst)
    return sel, cfg


def _collect(sel, cfg, url, fresh=False, **kw):
    cache = ClimatologyCache(url, fresh=fresh)
    return collect_climatologies(sel, cfg, cache=cache, **kw), cache


def _same(a, b):
    assert [c.attrs["zstore"] for c in a.climatologies] == \
        [c.attrs["zstore"] for c in b.climatologies]
    for x, y in zip(a.climatologies, b.climatologies, strict=True):
        xr.testing.assert_identical(x, y)


def test_rerun_reads_everything_from_the_cache(copied, tmp_path):
    sel, cfg = copied
    first, c1 = _collect(sel, cfg, tmp_path / "cache")
    assert (c1.hits, c1.writes, first.cached) == (0, len(sel), 0)
    second, c2 = _collect(sel, cfg, tmp_path / "cache")
    assert (c2.hits, c2.writes, second.cached) == (len(sel), 0, len(sel))
    _same(first, second)
    plain = collect_climatologies(sel, cfg)  # no cache at all: the same numbers
    _same(first, plain)


def test_fresh_recomputes_and_overwrites(copied, tmp_path):
    sel, cfg = copied
    _collect(sel, cfg, tmp_path / "cache")
    again, cache = _collect(sel, cfg, tmp_path / "cache", fresh=True)
    assert (cache.hits, cache.writes, again.cached) == (0, len(sel), 0)


def test_interrupted_run_resumes_without_recomputing(copied, tmp_path, monkeypatch):
    sel, cfg = copied
    done = []
    real_finish = collect.finish

    def dies_on_the_third(clim):
        if len(done) == 2:
            raise KeyboardInterrupt("the batch job was preempted")
        done.append(clim.attrs["zstore"])
        return real_finish(clim)

    monkeypatch.setattr(collect, "finish", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        _collect(sel, cfg, tmp_path / "cache")
    monkeypatch.setattr(collect, "finish", real_finish)

    computed = []
    real_prepare = collect.prepare
    monkeypatch.setattr(collect, "prepare",
                        lambda row, *a, **k: computed.append(row["zstore"])
                        or real_prepare(row, *a, **k))
    resumed, cache = _collect(sel, cfg, tmp_path / "cache")
    assert cache.hits == 2 and resumed.cached == 2
    assert sorted(computed) == sorted(set(sel["zstore"]) - set(done))
    _same(resumed, collect_climatologies(sel, cfg))


def test_changed_store_is_recomputed(copied, tmp_path):
    sel, cfg = copied
    first, _ = _collect(sel, cfg, tmp_path / "cache")
    target = sel.loc[0, "zstore"]
    before = store_fingerprint(target)
    # the provider rewrites the data in place (same version): 10 % more respiration
    ds = xr.open_zarr(target, decode_times=False).load()
    ds["rh"] = ds["rh"] * 1.1
    ds.to_zarr(target, mode="a")
    assert store_fingerprint(target) != before
    second, cache = _collect(sel, cfg, tmp_path / "cache")
    assert (cache.hits, cache.writes) == (len(sel) - 1, 1)
    new = {c.attrs["zstore"]: c.attrs["land_total_PgC_yr"] for c in second.climatologies}
    old = {c.attrs["zstore"]: c.attrs["land_total_PgC_yr"] for c in first.climatologies}
    assert new[target] == pytest.approx(1.1 * old[target], rel=1e-6)
    assert all(new[z] == old[z] for z in old if z != target)


def test_other_period_is_another_entry(copied, tmp_path):
    sel, cfg = copied
    _collect(sel, cfg, tmp_path / "cache")
    other = Config(**{**cfg.to_dict(), "period": (1990, 1990)})
    result, cache = _collect(sel, other, tmp_path / "cache")
    assert cache.hits == 0 and len(result.climatologies) == len(sel)


def test_failures_are_not_cached(copied, tmp_path):
    sel, cfg = copied
    broken = sel.copy()
    chunk = sorted((Path(broken.loc[1, "zstore"]) / "rh").glob("1.*"))[0]
    good = chunk.read_bytes()
    chunk.write_bytes(b"\x00garbage" * 100)
    result, cache = _collect(broken, cfg, tmp_path / "cache")
    assert [e.zstore for e in result.excluded] == [broken.loc[1, "zstore"]]
    assert cache.writes == len(sel) - 1
    chunk.write_bytes(good)  # the store is repaired: only it is computed now
    result, cache = _collect(broken, cfg, tmp_path / "cache")
    assert (cache.hits, cache.writes, len(result.excluded)) == (len(sel) - 1, 1, 0)


def test_incomplete_entry_is_not_a_hit(copied, tmp_path):
    sel, cfg = copied
    _collect(sel, cfg, tmp_path / "cache")
    markers = sorted((tmp_path / "cache").glob("*.json"))
    markers[0].unlink()  # killed between writing the Zarr and its marker
    _, cache = _collect(sel, cfg, tmp_path / "cache")
    assert (cache.hits, cache.writes) == (len(sel) - 1, 1)


def test_cache_location_from_the_config():
    assert Config(output="gs://bucket/run1").cache_url == "gs://bucket/run1/cache"
    assert Config(output="out", cache="s3://b/c").cache_url == "s3://b/c"
    assert Config(cache=False).cache_url is None
    with pytest.raises(ConfigError, match="cache"):
        Config(cache=True)


def test_cached_values_are_float_identical(copied, tmp_path):
    sel, cfg = copied
    first, _ = _collect(sel.iloc[:1], cfg, tmp_path / "cache")
    second, _ = _collect(sel.iloc[:1], cfg, tmp_path / "cache")
    a, b = first.climatologies[0], second.climatologies[0]
    assert a["flux"].dtype == b["flux"].dtype
    np.testing.assert_array_equal(a["flux"].values, b["flux"].values)


def test_a_cache_that_cannot_be_written_never_sinks_the_run(copied, tmp_path):
    """Entries are written in the background; one that fails is reported, and the
    climatologies are the same as without a cache."""
    sel, cfg = copied
    (tmp_path / "a-file").write_text("not a directory")
    said = []
    result, cache = _collect(sel, cfg, tmp_path / "a-file" / "cache", on_progress=said.append)
    assert cache.writes == 0 and len(cache.failures) == len(sel)
    assert any(f"{len(sel)} climatologies could not be cached" in s for s in said)
    _same(result, collect_climatologies(sel, cfg))
