"""Faults survived (issue 6): the run through the real gs:// path gives the undisturbed
results when the object store answers 503 to a share of requests (gcsfs retries), when a
Dask worker is killed mid-run (the scheduler recomputes what it held), and excludes, names
and explains a dataset with a corrupt chunk while every other result stays the same.

One small world, one LocalCluster and one undisturbed baseline run are shared by the module;
the drivers stage is off and the reference grid coarse (regular:5), so that the module stays
under two minutes on two cores (about 35 s of it generating the world, when no other test
module has). Faults come from ``rhcloud.testing.faultproxy.FaultProxy``
in front of the GCS emulator, reached through ``storage_options.endpoint_url`` exactly as
the emulator is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
import urllib.parse
from pathlib import Path

import gcsfs
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from rhcloud import run
from rhcloud.config import Config, config_from_dict
from rhcloud.stages.ingest import DatasetError, open_store
from rhcloud.testing.faultproxy import FaultProxy

pytestmark = pytest.mark.slow

GRID = "regular:5"
# fields of results.zarr that must not move (ensemble fields included)
KEY_FIELDS = ("rh", "npp", "rh_landfrac", "npp_landfrac", "obs_products", "obs_median",
              "obs_mad", "residual", "residual_median", "residual_mean")
# the dataset whose copy gets a corrupt chunk: a model with several members, so the model
# stays in the run and only its member aggregate moves
CORRUPT = {"source_id": "CESM2", "member_id": "r2i1p1f1", "variable_id": "rh"}


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def run_config(small_world, gcs_world) -> dict:
    """The world's own run config, all members, through the emulator; a coarse reference
    grid; no covariates and no NPP reference, so the drivers stage skips itself (it is not
    what these tests are about); no climatology cache (every run reads its data)."""
    cfg = yaml.safe_load((small_world / "run.yaml").read_text())
    cfg.pop("covariates", None)
    cfg.pop("npp_reference", None)
    cfg.update(catalog="gs://cmip6/pangeo-cmip6.json", models="all", members="all",
               reference_grid=GRID, storage_options={"token": "anon", "endpoint_url": gcs_world})
    if "cache" in {f.name for f in dataclasses.fields(Config)}:
        cfg["cache"] = False
    return cfg


def _run(cfg: dict, out: Path, client, progress=None, **changes) -> Path:
    config = config_from_dict({**cfg, **changes, "output": str(out)})
    run(config, client=client, progress=progress)
    return out


@pytest.fixture(scope="module")
def baseline(run_config, client, tmp_path_factory) -> Path:
    return _run(run_config, tmp_path_factory.mktemp("baseline") / "out", client)


def _tables(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / f"{name}.csv")


def _results(out: Path) -> xr.Dataset:
    with xr.open_zarr(out / "results.zarr") as ds:
        return ds.load()


def assert_same_results(out: Path, base: Path) -> None:
    """global totals, Table 1, exclusions and the key fields of results.zarr: identical."""
    for name in ("global_totals", "model_metrics", "excluded"):
        pd.testing.assert_frame_equal(_tables(out, name), _tables(base, name), check_exact=True)
    got, want = _results(out), _results(base)
    for v in KEY_FIELDS:
        if v in want:
            xr.testing.assert_identical(got[v], want[v])


# ---------------------------------------------------------------------------- the proxy


def test_proxy_faults_are_deterministic_whatever_the_order():
    """The same requests fail for a seed in any arrival order; no request fails more than
    ``max_consecutive`` times in a row; the rate is about right."""
    keys = [("GET", f"/o/chunk{i}", None) for i in range(400)] * 3

    def faulted(order, seed=7):
        p = FaultProxy("http://127.0.0.1:9", fault_rate=0.3, seed=seed, max_consecutive=2)
        seen: dict[tuple, list] = {}
        for k in order:
            seen.setdefault(k, []).append(p._decide(*k) is not None)
        return seen, p.counts()

    a, counts = faulted(keys)
    b, _ = faulted(list(reversed(keys)))
    assert a == b
    assert counts["requests"] == 1200 and 0.2 < counts["faults"] / 1200 < 0.4
    assert not any(all(s) for s in a.values())  # three attempts never all fail
    assert faulted(keys, seed=8)[0] != a


def test_dropped_connections_are_retried(gcs_world, small_world):
    """Connections closed without an answer: the store still opens and reads identically."""
    zstore = _zstore(small_world, **CORRUPT)
    opts = {"token": "anon", "endpoint_url": gcs_world}
    want = open_store(zstore, opts)["rh"].isel(time=slice(12, 24)).mean("time").values
    proxy = FaultProxy(gcs_world, fault="drop", fault_rate=0.3, seed=3)
    with proxy as url:
        got = open_store(zstore, {**opts, "endpoint_url": url})["rh"].isel(
            time=slice(12, 24)).mean("time").values
    np.testing.assert_array_equal(got, want)
    assert proxy.counts()["by_kind"].get("drop", 0) > 0


def test_stalled_request_retried_with_a_read_timeout(gcs_world, small_world):
    """A request that hangs: with an aiohttp socket-read timeout gcsfs gives up on it and
    retries (``ServerTimeoutError`` is a retriable ``ClientError``)."""
    import aiohttp

    zstore = _zstore(small_world, **CORRUPT)
    proxy = _stall_metadata_once(gcs_world)
    with proxy as url:
        opts = {"token": "anon", "endpoint_url": url,
                "requests_timeout": aiohttp.ClientTimeout(sock_connect=10, sock_read=0.5)}
        ds = open_store(zstore, opts)
    assert "rh" in ds
    assert proxy.counts()["by_kind"] == {"delay": 1}


def test_stalled_request_retried_with_a_numeric_timeout(gcs_world, small_world):
    zstore = _zstore(small_world, **CORRUPT)
    with _stall_metadata_once(gcs_world) as url:
        opts = {"token": "anon", "endpoint_url": url, "requests_timeout": 0.5}
        try:
            ds = open_store(zstore, opts)
        except DatasetError as exc:
            pytest.fail(str(exc))
        assert "rh" in ds


def _stall_metadata_once(upstream: str) -> FaultProxy:
    """The first request for each consolidated-metadata object hangs for 3 s."""
    return FaultProxy(upstream, fault="delay", fault_delay=3.0, fault_rate=1.0,
                      max_consecutive=1,
                      match=lambda path: ".zmetadata" in urllib.parse.unquote(path))


def _zstore(world: Path, source_id: str, member_id: str, variable_id: str) -> str:
    df = pd.read_csv(world / "pangeo-cmip6.csv")
    row = df[(df.source_id == source_id) & (df.member_id == member_id)
             & (df.variable_id == variable_id)]
    return str(row.sort_values("version").zstore.iloc[-1])


# ---------------------------------------------------------------------------- whole runs


def test_object_store_503s_survived(run_config, client, baseline, tmp_path):
    """10 % of all requests (catalog, metadata on the client, chunks on the workers)
    answered 503: gcsfs retries every one and the run's results are the undisturbed ones."""
    proxy = FaultProxy(run_config["storage_options"]["endpoint_url"], fault="503",
                       fault_rate=0.10, seed=11, max_consecutive=2)
    with proxy as url:
        out = _run(run_config, tmp_path / "out", client,
                   storage_options={"token": "anon", "endpoint_url": url})
    counts = proxy.counts()
    assert counts["statuses"].get(503, 0) == counts["faults"] > 50, counts
    hit = [urllib.parse.unquote(path) for _, path, _ in proxy.fault_log]
    # faults met the client (catalog, consolidated metadata) and the workers (data chunks)
    assert any(p.split("?")[0].endswith("pangeo-cmip6.csv") or ".zmetadata" in p for p in hit)
    assert any("/rh/1.0.0" in p or "/npp/1.0.0" in p or "/rh/2.0.0" in p
               or "/npp/2.0.0" in p for p in hit), hit
    assert _tables(out, "excluded").empty
    assert_same_results(out, baseline)


def test_worker_killed_mid_run(run_config, client, baseline, tmp_path):
    """SIGKILL of the worker holding the most finished climatology pieces while the
    climatologies are still being opened and computed: the nanny restarts it, the scheduler
    recomputes what was lost, the results are the undisturbed ones."""
    pids = client.run(os.getpid)
    killed: dict = {}
    stage_done: dict = {}

    def kill_when_some_finished():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not stage_done:
            held = client.has_what()
            if sum(len(v) for v in held.values()) >= 6:
                addr = max(held, key=lambda a: len(held[a]))
                killed.update(addr=addr, keys=len(held[addr]), t=time.monotonic())
                os.kill(pids[addr], signal.SIGKILL)
                return
            time.sleep(0.02)

    def progress(msg: str) -> None:  # the climatologies are gathered: the stage is over
        if msg.startswith(("climatology:", "regrid:")) and not stage_done:
            stage_done["t"] = time.monotonic()

    killer = threading.Thread(target=kill_when_some_finished, daemon=True)
    killer.start()
    out = _run(run_config, tmp_path / "out", client, progress=progress)
    killer.join(timeout=10)
    assert killed, "no worker was killed"
    assert killed["t"] < stage_done["t"] and killed["keys"] > 0
    client.wait_for_workers(2, timeout=60)
    assert killed["addr"] not in client.scheduler_info()["workers"]
    assert _tables(out, "excluded").empty
    assert_same_results(out, baseline)


@pytest.fixture(scope="module")
def corrupt_catalog(gcs_world, small_world) -> tuple[str, str]:
    """A copy of one store, uploaded beside the world with one period chunk overwritten by
    garbage, and a catalog that points that dataset at the copy. (The world's own objects
    are shared with other tests: they are never overwritten.) Returns (catalog URL, the
    corrupt store's zstore)."""
    fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=gcs_world)
    original = _zstore(small_world, **CORRUPT)
    src = original.removeprefix("gs://").rstrip("/")
    dst = src.replace("cmip6/CMIP6/", "cmip6/faults/corrupt/CMIP6/", 1)
    chunk = f"{CORRUPT['variable_id']}/1.0.0"  # 1990: inside the period
    names = [p for p in fs.find(src) if not p.endswith("/")]
    assert f"{src}/{chunk}" in names
    for name in names:
        rel = name[len(src) + 1:]
        fs.pipe(f"{dst}/{rel}", b"\x00garbage" * 100 if rel == chunk else fs.cat(name))
    zstore = f"gs://{dst}/"
    df = pd.read_csv(small_world / "pangeo-cmip6.csv")
    df.loc[df.zstore == original, "zstore"] = zstore
    assert (df.zstore == zstore).sum() == 1
    fs.pipe("cmip6/faults/corrupt-cmip6.csv", df.to_csv(index=False).encode())
    spec = json.loads((small_world / "pangeo-cmip6.json").read_text())
    spec["catalog_file"] = "gs://cmip6/faults/corrupt-cmip6.csv"
    fs.pipe("cmip6/faults/corrupt-cmip6.json", json.dumps(spec).encode())
    return "gs://cmip6/faults/corrupt-cmip6.json", zstore


def test_corrupt_chunk_excludes_only_its_dataset(run_config, client, baseline, corrupt_catalog,
                                                 small_world, tmp_path):
    catalog_url, zstore = corrupt_catalog
    out = _run(run_config, tmp_path / "out", client, catalog=catalog_url)
    excluded = _tables(out, "excluded")
    mine = excluded[excluded.zstore == zstore]
    assert len(mine) == 1, excluded
    assert "reading data failed" in mine.reason.iloc[0]
    assert len(excluded) == 1, excluded  # nothing else (the model keeps its other members)

    # every other dataset's total and field is the undisturbed one
    original = _zstore(small_world, **CORRUPT)
    totals, base_totals = _tables(out, "global_totals"), _tables(baseline, "global_totals")
    keep = ~((base_totals.member_id == CORRUPT["member_id"])
             & (base_totals.name == CORRUPT["source_id"])
             & (base_totals.variable_id == CORRUPT["variable_id"]))
    members = base_totals.member_id != "ensemble"
    per_dataset = (base_totals.kind != "summary") & members
    want = base_totals[keep & per_dataset].reset_index(drop=True)
    got = totals[(totals.kind != "summary") & (totals.member_id != "ensemble")]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_exact=True)
    got_res, want_res = _results(out), _results(baseline)
    var = CORRUPT["variable_id"]
    other = "npp" if var == "rh" else "rh"
    stores = _store_coord(want_res, var)
    # the corrupt member has no field of that variable (no row, or an all-NaN row with no
    # store), every other dataset's field is the undisturbed one
    has = got_res[var].notnull().any(["lat", "lon"]).values
    assert original not in set(got_res[stores].values)
    assert zstore not in set(got_res[stores].values[has])
    kept = np.flatnonzero(want_res[stores].values != original)
    assert has.sum() == len(kept) == want_res.sizes["dataset"] - 1
    for v in (var, f"{var}_landfrac"):
        xr.testing.assert_identical(got_res[v].isel(dataset=np.flatnonzero(has)),
                                    want_res[v].isel(dataset=kept))
    # the other variable: all its datasets, unchanged (leaving out the corrupt variable's
    # store labels, which rows of a shared dataset axis may carry)
    for v in (other, f"{other}_landfrac"):
        xr.testing.assert_identical(_without_stores_of(got_res[v], var),
                                    _without_stores_of(want_res[v], var))
    for v in ("obs_products", "obs_median", "obs_mad"):
        xr.testing.assert_identical(got_res[v], want_res[v])


def _store_coord(results: xr.Dataset, variable: str) -> str:
    """The coordinate naming each dataset's store of ``variable``."""
    name = f"{variable}_zstore"
    return name if name in results.coords else "zstore"


def _without_stores_of(da: xr.DataArray, variable: str) -> xr.DataArray:
    names = (f"{variable}_zstore", f"{variable}_version", "zstore", "version")
    return da.drop_vars([c for c in names if c in da.coords])
