"""The drivers' fits as tasks on a Dask cluster: a small AIC table through 2 workers gives the
in-process table, its fits run on both workers, and a fit that cannot be made is excluded
while the rest of the table stands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from drivers_helpers import simulate_gamm_case

from rhcloud.drivers.api import fit_drivers, fit_residuals
from rhcloud.drivers.fitcache import FitCache

STRUCTURES = ["exponential", "rational", "spherical"]


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate_gamm_case(n=150, seed=5)


def _fit(data, structures=STRUCTURES, **kw):
    return fit_drivers(data, response="y", smooth=["x1", "x2"], factor=["lith"],
                       distance="lonlat", structures=structures, **kw)


def _same(a, b, exact_gamm: bool = True):
    """The GLS tables bit for bit; the GAMM's too where both ran in one kind of process.
    Between a worker and this process it is equal to rounding: a worker's BLAS has one
    thread, this process's several, and the GAMM's set-up products outside its
    single-threaded likelihood block may then round differently."""
    pd.testing.assert_frame_equal(a.gls_aic(), b.gls_aic(), check_exact=True)
    for x, y in ((a.gamm_terms(), b.gamm_terms()), (a.gamm_effects(), b.gamm_effects())):
        if exact_gamm:
            pd.testing.assert_frame_equal(x, y, check_exact=True)
        else:
            pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-9, atol=1e-12)
    assert a.gamm.decision == b.gamm.decision


def _slow_fits(seconds: float):
    """Plant a pause before every GLS fit on the workers. The 150-cell fits take a few tens
    of milliseconds: on a loaded machine one worker can finish, and steal, all of them before
    the other one starts its first, so which workers fitted would be up to the machine's
    load. A fit that lasts a second leaves each worker its share; the numbers are the same."""

    def plant():
        import time

        import rhcloud.drivers.gls as g

        real = g.fit_gls

        def slow(*a, **kw):
            time.sleep(seconds)
            return real(*a, **kw)

        g._real_fit_gls, g.fit_gls = real, slow

    def unplant():
        import rhcloud.drivers.gls as g

        g.fit_gls = g._real_fit_gls

    return plant, unplant


def test_a_table_through_two_workers_is_the_in_process_table(client, data):
    here = _fit(data)
    plant, unplant = _slow_fits(1.0)
    client.run(plant)
    try:
        there = _fit(data, client=client)
    finally:
        client.run(unplant)
    _same(there, here, exact_gamm=False)
    workers = set(client.scheduler_info()["workers"])
    gls_rows = [t for t in there.fit_timings if t["fit"] == "gls"]
    assert len(gls_rows) == 2 * len(STRUCTURES)
    assert {t["worker"] for t in gls_rows} == workers  # both workers fitted
    gamm_rows = [t for t in there.fit_timings if t["fit"] == "gamm"]
    assert sorted(t["factor"] for t in gamm_rows) == [False, True]  # two tasks
    plain, factor = sorted(gamm_rows, key=lambda t: t["factor"])
    assert factor["started"] >= plain["ended"] - 0.05  # started from the fit without
    assert {t["worker"] for t in gamm_rows} <= workers
    for t in there.fit_timings:
        assert t["seconds"] > 0 and t["evals"] > 0
    assert all(t["worker"].startswith("in-process") for t in here.fit_timings)
    assert there.excluded == [] and there.executor.startswith("dask")


def test_the_cluster_reads_and_writes_the_fit_cache_as_in_process(client, data, tmp_path):
    first = FitCache(tmp_path / "fits")
    made = _fit(data, client=client, fit_cache=first)
    assert (first.hits, first.fitted) == (0, 2 * len(STRUCTURES) + 1)
    again = FitCache(tmp_path / "fits")
    _same(_fit(data, fit_cache=again), made)  # in-process, from the cluster's entries
    assert (again.hits, again.fitted) == (2 * len(STRUCTURES) + 1, 0)
    fresh = FitCache(tmp_path / "fits", fresh=True)
    _same(_fit(data, client=client, fit_cache=fresh), made)  # both made on workers
    assert (fresh.hits, fresh.fitted) == (0, 2 * len(STRUCTURES) + 1)


def test_a_fit_that_fails_on_the_workers_is_excluded_and_the_table_stands(client, data):
    def plant():
        import rhcloud.drivers.gls as g

        real = g.fit_gls

        def failing(y, X, dist, structure, *a, **kw):
            if structure == "spherical":
                raise np.linalg.LinAlgError("planted failure")
            return real(y, X, dist, structure, *a, **kw)

        g._real_fit_gls, g.fit_gls = real, failing

    def unplant():
        import rhcloud.drivers.gls as g

        g.fit_gls = g._real_fit_gls

    client.run(plant)
    try:
        res = _fit(data, client=client)
    finally:
        client.run(unplant)
    table = res.gls_aic()
    assert "spherical" not in set(table.structure)
    assert len(table) == 1 + 2 * (len(STRUCTURES) - 1)
    reasons = {r["zstore"]: r["reason"] for r in res.excluded}
    assert set(reasons) == {"drivers (median residual) GLS spherical",
                            "drivers (median residual) GLS spherical + nugget"}
    assert all("planted failure" in r for r in reasons.values())
    here = _fit(data, structures=["exponential", "rational"])
    pd.testing.assert_frame_equal(table, here.gls_aic(), check_exact=True)


def test_warm_starts_on_a_large_table_in_process_and_on_the_cluster(client, data):
    """With more cells than the subsample search uses, the mean residual's fits start from
    the median's and a nugget fit from its fit without; the cluster gives the same fits, and
    a warm fit is at least as good as a cold one."""
    rng = np.random.default_rng(3)
    mean = data.assign(y=data.y * 1.05 + rng.normal(0, 0.05, len(data)))
    kw = dict(response="y", smooth=["x1", "x2"], factor=["lith"], distance="lonlat",
              structures=["exponential", "rational"], subsample=100, gamm=False)
    tables = {"median": data, "mean": mean}
    here, excluded, _ = fit_residuals(tables, **kw)
    there, _, _ = fit_residuals(tables, client=client, **kw)
    assert excluded == []
    for a, b in zip(here, there, strict=True):
        pd.testing.assert_frame_equal(a.gls_aic(), b.gls_aic(), check_exact=True)
    warm = {(r.residual_label, t["structure"], t["nugget"]): t["warm"]
            for r in here for t in r.fit_timings}
    assert warm == {("median", "exponential", False): False, ("median", "rational", False): False,
                    ("median", "exponential", True): True, ("median", "rational", True): True,
                    ("mean", "exponential", False): True, ("mean", "rational", False): True,
                    ("mean", "exponential", True): True, ("mean", "rational", True): True}
    cold = fit_drivers(mean, residual_label="mean", **kw)
    got = here[1].gls_aic().set_index(["structure", "nugget"]).loglik
    ref = cold.gls_aic().set_index(["structure", "nugget"]).loglik
    assert (got - ref.loc[got.index]).min() > -1e-6


class _Watched:
    """A client that records, at each submission, the worker it names and how many of the
    tasks submitted before are not done yet."""

    def __init__(self, client):
        self._client = client
        self.submitted: list[tuple[list[str] | None, int]] = []
        self._futures: list = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def submit(self, *args, **kw):
        running = sum(not f.done() for f in self._futures)
        self.submitted.append((kw.get("workers"), running))
        fut = self._client.submit(*args, **kw)
        self._futures.append(fut)
        return fut


def test_fits_wait_on_the_client_until_a_worker_thread_is_free(client, data):
    """The scheduler would queue a fit behind a busy worker's long fit while the other one
    idles: each fit goes out only when a thread is free, to that worker."""
    plant, unplant = _slow_fits(0.5)
    client.run(plant)
    watched = _Watched(client)
    try:
        there = _fit(data, client=watched)
    finally:
        client.run(unplant)
    workers = set(client.nthreads())
    threads = sum(client.nthreads().values())
    assert len(watched.submitted) == 2 * len(STRUCTURES) + 2  # the GLS fits and two GAMMs
    for named, running in watched.submitted:
        assert named is not None and len(named) == 1 and named[0] in workers
        assert running < threads  # never more tasks out than threads
    _same(there, _fit(data), exact_gamm=False)
