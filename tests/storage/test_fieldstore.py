"""The field store: regridded fields streamed to disk one dataset at a time, read back lazily;
every statistic across datasets identical to the in-memory stack, whatever the chunking."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rhcloud.config import Config
from rhcloud.core import grids
from rhcloud.core import metrics as evaluate
from rhcloud.core.stack import align_stacks, present, stack_fields
from rhcloud.stages import catalog
from rhcloud.stages.climatology import Collected, iter_climatologies
from rhcloud.stages.ingest import open_inputs
from rhcloud.storage.fieldstore import FieldStore, lat_band, local_scheduler, temporary_store

GRID = grids.named_grid("regular:10")  # 18 × 36


def _fields(seed: int, n_models: int, max_members: int) -> list[xr.Dataset]:
    """rh for every member of every model, npp for most (one member's npp failed)."""
    rng = np.random.default_rng(seed)
    shape = (GRID.sizes["lat"], GRID.sizes["lon"])
    out = []
    for m in range(n_models):
        for r in range(1, int(rng.integers(1, max_members + 1)) + 1):
            for var in ("rh", "npp"):
                if var == "npp" and m == 0 and r == 1:
                    continue
                flux = rng.gamma(2.0, 200.0, shape)
                flux[rng.random(shape) < 0.3] = np.nan  # oceans
                land = np.where(np.isnan(flux), 0.0, rng.uniform(0.2, 1.0, shape))
                out.append(xr.Dataset(
                    {"flux": (("lat", "lon"), flux), "landfrac": (("lat", "lon"), land)},
                    coords={"lat": GRID["lat"], "lon": GRID["lon"]},
                    attrs={"source_id": f"M{m}", "member_id": f"r{r}i1p1f1",
                           "variable_id": var, "zstore": f"gs://x/M{m}/r{r}/{var}/",
                           "version": "v1"}))
    rng.shuffle(out)  # arrival order is not selection order
    return out


def _stacked(fields: list[xr.Dataset], variables=("rh", "npp")) -> xr.Dataset:
    return align_stacks([stack_fields(fields, v) for v in variables])


def _statistics(stack: xr.Dataset) -> dict:
    """What the evaluation computes across datasets."""
    models = present(stack, "rh")
    med = models.isel(dataset=0).load() * 0.9  # a stand-in product median
    mad = xr.full_like(med, 50.0)
    res = evaluate.esm_residual(evaluate.member_mean(models), med)
    per_member = evaluate.esm_residual(models, med, "dataset")
    return {"metrics": evaluate.model_metrics(models, med, mad),
            "residual_median": res["residual_median"].values,
            "residual_mean": res["residual_mean"].values,
            "per_member_median": per_member["residual_median"].values,
            "member_mean": evaluate.member_mean(present(stack, "npp")).values,
            "landfrac_max": stack["rh_landfrac"].max("dataset").values}


@pytest.mark.parametrize("chunk_bytes", [8 * 36, 8 * 36 * 5, 2**18])  # 1, 5, 18 rows
def test_the_stored_stack_is_the_in_memory_stack(tmp_path, chunk_bytes):
    fields = _fields(0, 4, 3)
    store = FieldStore(tmp_path / "f.zarr", GRID, chunk_bytes)
    for f in fields:
        store.add(f)
    assert len(store) == len(fields)
    lazy = store.fields()
    assert lazy[0]["flux"].chunks[0][0] == lat_band(18, 36, chunk_bytes)
    with local_scheduler():
        got = _stacked(lazy)
        assert got["rh"].chunks is not None  # lazy: read block by block
        want = _stacked(fields)
        xr.testing.assert_identical(got.compute(), want)


@settings(max_examples=15, deadline=None)
@example(seed=442, rows=1, max_members=4)  # a residual of -0.048 from fluxes of O(1e3)
@given(seed=st.integers(0, 2**16), rows=st.integers(1, 18), max_members=st.integers(1, 4))
def test_statistics_do_not_depend_on_the_chunking(tmp_path_factory, seed, rows, max_members):
    fields = _fields(seed, 3, max_members)
    with temporary_store(GRID, chunk_bytes=8 * 36 * rows) as store, local_scheduler():
        for f in fields:
            store.add(f)
        got = _statistics(_stacked(store.fields()))
        want = _statistics(_stacked(fields))
    pd.testing.assert_frame_equal(got.pop("metrics"), want.pop("metrics"))
    # Member means sum in chunk order, so they differ by an ulp of the fluxes (O(1e3)); a
    # residual near zero inherits that absolute error, which no relative tolerance allows.
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-9, equal_nan=True,
                                   err_msg=name)


def test_a_field_on_another_grid_is_refused_by_name(tmp_path):
    store = FieldStore(tmp_path / "f.zarr", GRID)
    other = grids.named_grid("regular:30")
    field = xr.Dataset({v: (("lat", "lon"), np.ones((other.sizes["lat"], other.sizes["lon"])))
                        for v in ("flux", "landfrac")}, attrs={"zstore": "gs://x/odd/"})
    with pytest.raises(ValueError, match="gs://x/odd/.*shape"):
        store.add(field)
    assert len(store) == 0


@pytest.mark.parametrize("in_flight", [1, 3])
def test_climatologies_are_not_kept_once_handed_on(small_world, monkeypatch, in_flight):
    """The stream holds one climatology at a time and opens at most ``in_flight`` stores
    ahead: when the next one arrives, the previous one (dropped by its consumer) is gone, so
    memory does not grow with members."""
    import rhcloud.stages.climatology as collect

    opened = []
    real_open = collect._open
    monkeypatch.setattr(collect, "_open", lambda row, *a: opened.append(1) or real_open(row, *a))
    cfg = Config(catalog=str(small_world / "local-cmip6.json"), members="all",
                 models=["CanESM5", "MIROC-ES2L", "NorESM2-LM"], period=(1990, 1991),
                 in_flight=in_flight)
    selection = catalog.select(catalog.open_catalog(cfg.catalog).df, cfg)[0]
    into = Collected()
    previous = None
    seen = 0
    for clim in iter_climatologies(open_inputs(selection, cfg, read_files=False), into):
        gc.collect()
        assert previous is None or previous() is None, "the stream kept a climatology"
        seen += 1
        assert len(opened) <= seen + in_flight
        previous = weakref.ref(clim)
        del clim
    assert seen == len(selection) == len(into.datasets) == len(opened) > 3
    assert into.climatologies == [] and into.excluded == []
    assert all("land_total_PgC_yr" in d for d in into.datasets)


def test_in_flight_must_be_positive():
    with pytest.raises(ValueError, match="in_flight"):
        Config(in_flight=0)


class _Graphs:
    """A scheduler plugin counting the graphs the scheduler receives."""

    def __init__(self):
        from distributed.diagnostics.plugin import SchedulerPlugin

        outer = self
        self.n = 0

        class Plugin(SchedulerPlugin):
            def update_graph(self, scheduler, **kwargs):
                outer.n += 1

        self.plugin = Plugin()


@pytest.fixture(scope="module")
def in_process_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


def test_statistics_over_the_store_never_reach_the_cluster(tmp_path, in_process_client):
    """The store is on this machine's disk, which a gateway cluster's workers cannot read:
    inside ``local_scheduler`` nothing is sent to the default client's scheduler."""
    graphs = _Graphs()
    in_process_client.cluster.scheduler.add_plugin(graphs.plugin, name="graphs-unit")
    in_process_client.compute(xr.DataArray(np.arange(3.0)).chunk(1).sum().data).result()
    assert graphs.n == 1  # the default client does receive what is not scoped
    fields = _fields(1, 3, 2)
    store = FieldStore(tmp_path / "f.zarr", GRID)
    for f in fields:
        store.add(f)
    with local_scheduler():
        got = _statistics(_stacked(store.fields()))
    assert graphs.n == 1
    want = _statistics(_stacked(fields))
    np.testing.assert_allclose(got["residual_median"], want["residual_median"], equal_nan=True)


def test_a_run_sends_the_cluster_nothing_after_the_climatologies(small_world, tmp_path,
                                                                  in_process_client):
    """In a whole run the cluster reads the stores and the observation files; from the
    regrid stage on (stacking, Table 1, residuals, report, results.zarr), nothing."""
    import yaml

    from rhcloud import run
    from rhcloud.config import config_from_dict

    cfg = yaml.safe_load((small_world / "run.yaml").read_text())
    cfg.update(models=["CanESM5", "IPSL-CM6A-LR", "NorESM2-LM"], members="all",
               reference_grid="regular:4", cache=False, drivers={"residuals": []},
               output=str(tmp_path / "out"))
    graphs = _Graphs()
    in_process_client.cluster.scheduler.add_plugin(graphs.plugin, name="graphs-run")
    seen: dict[str, int] = {}

    def progress(msg: str) -> None:
        seen[msg.split(":")[0]] = graphs.n

    result = run(config_from_dict(cfg), client=in_process_client, progress=progress)
    assert seen["climatology"] > 0  # the stores were read on the cluster
    assert graphs.n > seen["climatology"]  # the observation files gathered from it...
    assert seen["regrid"] == graphs.n  # ...and nothing after
    assert result.results["residual"].sizes["dataset"] == len(result.collected.datasets) // 2
