"""Where the drivers' fits run: in this process, or as tasks on a Dask cluster.

One *plan* covers every residual field of a run (median, mean): per residual, the GLS fits of
the AIC table (structure x nugget; the ``none`` row is exact and made here) and the GAMM
under the residual's lowest-AIC structure. Fits start from what earlier fits learnt
(:func:`warm_sources`): on a large table (more cells than the subsample searches use) a
structure with nugget starts from the best of its fit without (at the nested model) and the
subsample searches' start; the second residual's fits start from the best of the first
residual's optimum of the same structure, (with nugget) their own fit without, and their own
subsample searches' start; the GAMM starts from its GLS fit, the GAMM with the factor from
the one without. The reported values are always
float64 evaluations at the optimum (:func:`rhcloud.drivers.gls.fit_gls`).

Without a client the fits run here, one after another, in the order of the table (as
:func:`rhcloud.drivers.gls.aic_table` does). With a ``distributed.Client`` every correlated
GLS fit, and each GAMM (without the factor, then with it), is a task: the residual's table of
cells (:class:`FitData`, kilobytes) is sent once to every worker (a table on one worker
would pull every fit to it: the scheduler places a task beside its data); each worker builds the distance matrix of a
metric when a fit first needs it and keeps it for the fits it runs (:class:`Resources`, one
per worker process, keyed by a digest of the coordinates); the client never holds an n x n
matrix. A fit starts as soon as the fits it starts from are done and a worker thread is
free (the client holds the others, highest priority first: the longest chain of fits waiting on
it). The client reads and
writes the fit cache (:mod:`rhcloud.drivers.fitcache`) as fits arrive, so a run stopped
half-way resumes with the fits not yet made. Dask retries a failed task (``retries``, e.g.
on a lost worker); a fit that still fails is reported in ``excluded`` and the rest of its
table stands.

Every fit's seconds, likelihood evaluations and worker are recorded (``timings``) and end in
``tables/drivers_summary.json``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import resource
import socket
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import gamm as gamm_mod
from . import gls, vecchia
from ._blas import core_share
from .distances import pairwise
from .fitcache import FitCache, digest
from .gamm import GAMMFit, GAMMSelection, select_factor
from .gls import GLSFit, rank_fits

log = logging.getLogger("rhcloud")

RETRIES = 2
"""Dask retries of a fit task (a lost worker, a worker killed for memory)."""


@dataclass
class FitData:
    """What one residual's fits need: the GLS design, the cells, the GAMM's frame and the
    options. Small (no n x n matrix): this is what travels to the workers, once."""

    label: str
    y: np.ndarray
    X: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    coef_names: list[str]
    distance_for: dict[str, str]
    likelihood: str  # "exact" or "vecchia"
    subsample: int
    neighbors: int
    frame: pd.DataFrame  # lon, lat, response, smooth and factor columns (the GAMM's data)
    response: str
    smooth: list[str]
    factor: str | None
    alpha: float
    n_splines: int
    inputs: str = ""  # the fit cache's digest of the data and options
    coords: str = ""  # digest of the coordinates: the workers' distance cache key

    def __post_init__(self) -> None:
        if not self.coords:
            self.coords = digest(np.asarray(self.lon, np.float64),
                                 np.asarray(self.lat, np.float64))

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def warm_applies(self) -> bool:
        """Warm starts replace subsample searches, which only large tables make."""
        return self.n > self.subsample


# ----------------------------------------------------------------------------- resources
class Resources:
    """Distance matrices and work buffers of one process (a worker, or the client without a
    cluster), reused by the fits it runs.

    Distances are kept for the ``keep`` most recent coordinate sets (all metrics of a set);
    buffers are checked out by a fit and returned after it, so concurrent fits in one
    process (a multi-threaded worker) never share one."""

    def __init__(self, keep: int = 1):
        self.keep = keep
        self._lock = threading.Lock()
        self._dist: OrderedDict[str, dict[str, tuple[np.ndarray, float]]] = OrderedDict()
        self._free: dict[tuple[tuple[int, int], str], list[np.ndarray]] = {}
        self.built_s = 0.0  # seconds spent building distance matrices

    def distances(self, coords: str, lon: np.ndarray, lat: np.ndarray,
                  metric: str) -> tuple[np.ndarray, float, float]:
        """(distance matrix, its smallest positive entry, seconds spent building it here)."""
        with self._lock:
            per = self._dist.get(coords)
            if per is not None and metric in per:
                self._dist.move_to_end(coords)
                return (*per[metric], 0.0)
            t0 = time.perf_counter()
            d = pairwise(lon, lat, metric)
            dmin = gls._min_positive(d)
            spent = time.perf_counter() - t0
            self.built_s += spent
            if per is None:
                per = self._dist[coords] = {}
            per[metric] = (d, dmin)
            while len(self._dist) > self.keep:
                self._dist.popitem(last=False)
                self._free.clear()  # buffers of another size are not needed either
            return d, dmin, spent

    def checkout(self, shape: tuple[int, int], dtype: str) -> np.ndarray:
        with self._lock:
            free = self._free.get((shape, dtype))
            if free:
                return free.pop()
        return np.empty(shape, dtype=dtype, order="C")

    def give_back(self, buf: np.ndarray | None) -> None:
        if buf is None:
            return
        with self._lock:
            free = self._free.setdefault((buf.shape, buf.dtype.str.lstrip("<>=|")), [])
            if not free:  # one spare per shape and type
                free.append(buf)

    def clear(self) -> None:
        with self._lock:
            self._dist.clear()
            self._free.clear()


_WORKER = Resources()
"""This process's resources when it runs fits as Dask tasks."""


def clear_worker_resources() -> None:
    """Free the distance matrices a worker kept (run on every worker after the stage)."""
    _WORKER.clear()


def _where() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"in-process ({socket.gethostname()})"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- fit tasks
def gls_fit(data: FitData, structure: str, nugget: bool, warm: list[tuple[float, float]],
            res: Resources | None = None, cores: int | None = None,
            warm_search: bool = False) -> tuple[GLSFit, dict]:
    """One correlated GLS fit of ``data`` (a task, or a call here), and its timing."""
    res = _WORKER if res is None else res
    t0, wall0, cpu0 = time.perf_counter(), time.time(), time.process_time()
    built = 0.0
    work = work32 = None
    with core_share(cores):
        if data.likelihood == "vecchia":
            metric = data.distance_for.get(structure, "chordal")
            fit = vecchia.fit_gls_vecchia(data.y, data.X, data.lon, data.lat, structure, nugget,
                                          "ML", data.coef_names, metric, data.neighbors,
                                          subsample=data.subsample, distance=metric,
                                          warm=warm or None, warm_search=warm_search)
        else:
            metric = data.distance_for[structure]
            dist, dmin, built = res.distances(data.coords, data.lon, data.lat, metric)
            work = res.checkout(dist.shape, "f8")
            if len(dist) >= gls.SINGLE_MIN_N:
                work32 = res.checkout(dist.shape, "f4")
            try:
                fit = gls.fit_gls(data.y, data.X, dist, structure, nugget, "ML",
                                  data.coef_names, subsample=data.subsample, work=work,
                                  work32=work32, dmin=dmin, distance=metric,
                                  warm=warm or None, warm_search=warm_search)
            finally:
                res.give_back(work)
                res.give_back(work32)
    timing = {"fit": "gls", "residual": data.label, "structure": structure, "nugget": nugget,
              "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0,
              "distance_build_s": built,
              "evals": int(fit.n_evals), "evals32": int(fit.extra.get("n_evals32", 0)),
              "warm": bool(fit.extra.get("warm")), "worker": _where(), "started": wall0,
              "ended": time.time(), "worker_peak_rss_mb": _peak_rss_mb()}
    return fit, timing


def gamm_fit(data: FitData, best: GLSFit, with_factor: bool, res: Resources | None = None,
             cores: int | None = None, start: GAMMFit | None = None) -> tuple[GAMMFit, dict]:
    """The GAMM of ``data`` (with or without its factor) under the GLS fit ``best``,
    started from its range and nugget, or from the GAMM ``start`` (the fit without the
    factor; :func:`rhcloud.drivers.gamm.after`) (a task, or a call here)."""
    res = _WORKER if res is None else res
    t0, wall0, cpu0 = time.perf_counter(), time.time(), time.process_time()
    dist, whiten, built = _gamm_correlation(data, best, res)
    kwargs = _gamm_kwargs(best, data, whiten)
    if start is not None:
        kwargs.update(gamm_mod.after(start))
    with core_share(cores):
        fit = gamm_mod.fit_gamm(data.frame, data.response, data.smooth, dist,
                                factor=data.factor if with_factor else None, **kwargs)
    timing = {"fit": "gamm", "residual": data.label, "structure": best.structure,
              "nugget": best.nugget, "factor": with_factor,
              "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0,
              "distance_build_s": built,
              "evals": int(fit.n_evals), "evals32": 0, "warm": True, "worker": _where(),
              "started": wall0, "ended": time.time(), "worker_peak_rss_mb": _peak_rss_mb()}
    return fit, timing


def _gamm_correlation(data: FitData, best: GLSFit, res: Resources):
    if best.structure == "none":
        return None, None, 0.0
    metric = data.distance_for[best.structure]
    if data.likelihood == "vecchia":
        lik = vecchia.VecchiaLikelihood(data.y, data.X, data.lon, data.lat, best.structure,
                                        metric, m=data.neighbors)
        return None, lik.whiten, 0.0
    dist, _, built = res.distances(data.coords, data.lon, data.lat, metric)
    return dist, None, built


def _gamm_kwargs(best: GLSFit, data: FitData, whiten) -> dict[str, Any]:
    # from the GLS optimum itself (fit_gamm keeps a start nugget within [1e-3, 0.95]): a
    # start nugget raised to 0.01 put the paper-size median's GAMM (GLS nugget 0.0023) 180
    # logLik below its optimum, 41 evaluations against 17 from 0.0023, ending lower
    start = None if best.structure == "none" else (best.range, best.nugget_value)
    return {"structure": best.structure, "nugget": best.nugget, "start": start,
            "n_splines": data.n_splines, "whiten": whiten}


# ----------------------------------------------------------------------------- the plan
Node = tuple[str, str, bool]  # (residual label, structure, nugget)


def warm_sources(labels: list[str], data: dict[str, FitData], structures: list[str],
                 nuggets: tuple[bool, ...]) -> dict[Node, list[Node]]:
    """For each GLS fit, the fits whose optima start it (first the most similar problem):

    - the first residual's fits: a structure with nugget from its fit without (the nested
      model, nugget -> 0: the search never ends below it);
    - a later residual's fits: the first residual's fit of the same structure and nugget,
      and for a nugget fit also its own fit without.

    Only tables larger than their subsample searches (:attr:`FitData.warm_applies`) start
    warm; the others make the grid search of :func:`rhcloud.drivers.gls.fit_gls`."""
    out: dict[Node, list[Node]] = {}
    first = labels[0] if labels else None
    for label in labels:
        d = data[label]
        for s in structures:
            for nug in nuggets:
                src: list[Node] = []
                if d.warm_applies:
                    if label != first and data[first].coords == d.coords:
                        src.append((first, s, nug))
                    if nug and False in nuggets:
                        src.append((label, s, False))
                out[(label, s, nug)] = src
    return out


@dataclass
class Outcome:
    """One residual's fits: the GLS fits (by structure and nugget), the GAMM, the failures."""

    label: str
    none_fit: GLSFit | None = None
    fits: dict[tuple[str, bool], GLSFit] = field(default_factory=dict)
    gamm: GAMMSelection | None = None
    excluded: list[dict[str, str]] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)
    gls_s: float = 0.0
    gamm_s: float = 0.0
    error: BaseException | None = None

    def table(self, structures: list[str], nuggets: tuple[bool, ...]
              ) -> tuple[pd.DataFrame, list[GLSFit]]:
        """The ranked AIC table, rows in :func:`rhcloud.drivers.gls.fit_table`'s order."""
        fits = [self.none_fit] + [self.fits[(s, n)] for s in structures for n in nuggets
                                  if (s, n) in self.fits]
        return rank_fits(fits)


def _usable(f: GLSFit | None) -> bool:
    return f is not None and f.positive_definite and bool(np.isfinite(f.loglik))


def _warm_of(fits: list[GLSFit]) -> list[tuple[float, float]]:
    return [(float(f.range), float(f.nugget_value)) for f in fits]


class Plan:
    """The fits of every residual and the order they depend on each other in."""

    def __init__(self, data: dict[str, FitData], structures: list[str],
                 nuggets: tuple[bool, ...], fit_cache: FitCache | None, gamm: bool):
        self.data = data
        self.labels = list(data)
        self.structures = structures
        self.nuggets = nuggets
        self.cache = fit_cache
        self.gamm = gamm
        self.sources = warm_sources(self.labels, data, structures, nuggets)
        self.keys: dict[Node, str] = {}  # each fit's cache key, once its sources are done
        self.outcomes = {label: Outcome(label) for label in self.labels}

    def nodes(self) -> list[Node]:
        """Every GLS fit, each after the fits it starts from; within a residual in the
        table's order."""
        return [(label, s, n) for label in self.labels for s in self.structures
                for n in self.nuggets]

    def warm(self, node: Node, done: dict[Node, GLSFit | None]) -> list[tuple[float, float]]:
        """The starts of ``node`` from its sources that were made (all of them done), and
        its cache key: a cold fit's key is the one of a fit without sources; a warm fit's
        adds the keys of the fits it starts from (which determine their results)."""
        label, s, nug = node
        used = [n for n in self.sources[node] if _usable(done.get(n))]
        base = self.data[label].inputs
        self.keys[node] = (digest(base, "gls", s, nug, "warm", [self.keys[n] for n in used],
                                  self.warm_search(node))
                           if used else digest(base, "gls", s, nug))
        return _warm_of([done[n] for n in used])

    def warm_search(self, node: Node) -> bool:
        """Every warm fit also makes the subsample searches, and starts from the best of
        their start and the earlier optima at full size: an earlier optimum is a good start
        only in its own basin. (The paper-size mean residual's rational + nugget optimum is
        at 1,441 km, the median's at 283 km; started from the median's and its own fit
        without alone, the fit ended 181 logLik lower, at 364 km, and the table chose
        another structure.)"""
        return bool(self.sources[node])

    def gamm_key(self, label: str, best: GLSFit) -> str:
        d = self.data[label]
        return digest(d.inputs, "gamm", d.smooth, d.factor, d.alpha, d.n_splines,
                      best.structure, best.nugget, best.range, best.nugget_value)

    def cached_gls(self, node: Node) -> GLSFit | None:
        return None if self.cache is None else self.cache.lookup(self.keys[node], GLSFit)

    def none_fit(self, label: str) -> GLSFit:
        d = self.data[label]
        return gls.fit_gls(d.y, d.X, None, "none", method="ML", coef_names=d.coef_names)


def _log_fit(label: str, s: str, nug: bool, f: GLSFit) -> None:
    log.info("GLS (%s residual) %s%s: logLik %.4f, range %.5g, nugget %.4g, %d evaluations, "
             "%.1f s", label, s, " + nugget" if nug else "", f.loglik, f.range,
             f.nugget_value, f.n_evals, f.seconds)


def _cached_timing(kind: str, label: str, structure: str, nugget: bool, **extra) -> dict:
    return {"fit": kind, "residual": label, "structure": structure, "nugget": nugget,
            "cached": True, "seconds": 0.0, "evals": 0, "evals32": 0, "worker": None, **extra}


# ----------------------------------------------------------------------------- in-process
def run_in_process(plan: Plan, select: Callable[..., GAMMSelection],
                   catch: bool = False) -> dict[str, Outcome]:
    """Every fit here, residual by residual, in the table's order (``select`` makes the
    GAMM with its factor rule: :func:`rhcloud.drivers.gamm.fit_gamm_select`). ``catch``: an
    error in a residual's fits is kept in its ``Outcome.error`` (the next residual is still
    fitted) instead of raised."""
    res = Resources(keep=1)
    stage0 = time.time()
    done: dict[Node, GLSFit] = {}
    for label in plan.labels:
        d, out = plan.data[label], plan.outcomes[label]
        try:
            t1 = time.perf_counter()
            out.none_fit = plan.none_fit(label)
            for node in [n for n in plan.nodes() if n[0] == label]:
                _, s, nug = node
                warm = plan.warm(node, done)
                fit = plan.cached_gls(node)
                if fit is not None:
                    out.timings.append(_cached_timing("gls", label, s, nug))
                else:
                    fit, timing = gls_fit(d, s, nug, warm, res,
                                          warm_search=plan.warm_search(node))
                    timing.update(started=timing["started"] - stage0,
                                  ended=timing["ended"] - stage0)
                    out.timings.append(timing)
                    if plan.cache is not None:
                        plan.cache.store(plan.keys[node], fit)
                _log_fit(label, s, nug, fit)
                done[node] = out.fits[(s, nug)] = fit
            out.gls_s = time.perf_counter() - t1
            _, ranked = out.table(plan.structures, plan.nuggets)
            best = ranked[0]
            if plan.gamm and d.smooth and math.isfinite(best.aic):
                t2 = time.perf_counter()
                dist, whiten, _ = _gamm_correlation(d, best, res)

                def make(d=d, best=best, dist=dist, whiten=whiten, out=out) -> GAMMSelection:
                    t = time.time() - stage0
                    sel = select(d.frame, d.response, d.smooth, dist, factor=d.factor,
                                 alpha=d.alpha, **_gamm_kwargs(best, d, whiten))
                    for f, with_f in ((sel.with_factor, True), (sel.without_factor, False)):
                        if f is None:
                            continue
                        out.timings.append({
                            "fit": "gamm", "residual": d.label, "structure": best.structure,
                            "nugget": best.nugget, "factor": with_f, "seconds": f.seconds,
                            "evals": int(f.n_evals), "evals32": 0, "warm": True,
                            "worker": _where(), "started": t, "ended": t + f.seconds})
                        t += f.seconds
                    return sel

                if plan.cache is None:
                    out.gamm = make()
                else:
                    key = plan.gamm_key(label, best)
                    out.gamm = plan.cache.lookup(key, GAMMSelection)
                    if out.gamm is None:
                        out.gamm = make()
                        plan.cache.store(key, out.gamm)
                    else:
                        out.timings.append(_cached_timing("gamm", label, best.structure,
                                                          best.nugget))
                out.gamm_s = time.perf_counter() - t2
        except Exception as exc:
            if not catch:
                raise
            out.error = exc
    res.clear()
    return plan.outcomes


# ----------------------------------------------------------------------------- cluster
def core_shares(client) -> dict[str, int]:
    """Cores per task on each worker: the host's cores shared among the threads of all the
    workers on that host (2 single-threaded workers on 2 cores: 1 each)."""
    info = client.scheduler_info(n_workers=-1)["workers"] if _accepts_n_workers(client) \
        else client.scheduler_info()["workers"]
    cpus = client.run(os.cpu_count)
    threads: dict[str, int] = {}
    for w in info.values():
        threads[w["host"]] = threads.get(w["host"], 0) + int(w.get("nthreads", 1))
    return {addr: max(1, int(cpus.get(addr) or 1) // max(1, threads[w["host"]]))
            for addr, w in info.items()}


def _accepts_n_workers(client) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


def _task_gls(data: FitData, structure: str, nugget: bool, warm, search: bool,
              shares: dict[str, int]):
    return gls_fit(data, structure, nugget, warm, cores=shares.get(_where()),
                   warm_search=search)


def _task_gamm(data: FitData, best: GLSFit, with_factor: bool, shares: dict[str, int],
               start: GAMMFit | None = None):
    return gamm_fit(data, best, with_factor, cores=shares.get(_where()), start=start)


def run_on_cluster(plan: Plan, client, retries: int = RETRIES) -> dict[str, Outcome]:
    """Every correlated fit as a task on ``client``'s workers (see the module docstring)."""
    from distributed import as_completed

    stage0 = time.time()
    t_start = time.perf_counter()
    shares = core_shares(client)
    # on every worker: scattered to one, the fits would all be placed beside it
    scattered = {label: client.scatter(d, hash=False, broadcast=True)
                 for label, d in plan.data.items()}
    done: dict[Node, GLSFit | None] = {}
    futures: dict[Any, tuple] = {}
    ac = as_completed()
    remaining = {label: {n for n in plan.nodes() if n[0] == label} for label in plan.labels}
    gamm_parts: dict[str, dict[bool, GAMMFit]] = {label: {} for label in plan.labels}
    gamm_best: dict[str, GLSFit] = {}
    depth = _depths(plan)
    seconds: dict[tuple[str, bool], float] = {}  # a fit's seconds, by structure and nugget
    for label in plan.labels:
        plan.outcomes[label].none_fit = plan.none_fit(label)

    def rel(t: dict) -> dict:
        return {**t, "started": t["started"] - stage0, "ended": t["ended"] - stage0}

    def resolve(node: Node, fit: GLSFit | None) -> None:
        done[node] = fit
        label, s, nug = node
        out = plan.outcomes[label]
        if fit is not None:
            out.fits[(s, nug)] = fit
            _log_fit(label, s, nug, fit)
        remaining[label].discard(node)
        if not remaining[label]:
            out.gls_s = time.perf_counter() - t_start
            table_done(label)
        for nxt in plan.nodes():
            if nxt not in done and nxt not in submitted and all(
                    src in done for src in plan.sources[nxt]):
                launch(nxt)

    submitted: set[Node] = set()
    # Fits wait here, not on the workers, until a worker thread is free, and then go to that
    # worker: the scheduler takes a worker running a fit longer than its (unknown) duration
    # estimate for free and queues another fit behind it, and work stealing did not move
    # CPU-bound fits (a replay of the paper-size run's recorded fits left one of two workers
    # idle for 90 of 473 s). Greedy by priority, the same replay takes 425 s. A lost
    # worker's fits may run elsewhere (a loose restriction).
    ready: list[tuple[float, int, tuple, Callable, tuple, str]] = []
    order = itertools.count()

    def queue(priority: float, what: tuple, fn: Callable, *args, key: str) -> None:
        heapq.heappush(ready, (-priority, next(order), what, fn, args, key))

    def pump() -> None:
        busy = Counter(addr for _, addr in futures.values())
        slots: list[str | None] = [a for a, n in client.nthreads().items()
                                   for _ in range(max(0, int(n) - busy[a]))]
        if not slots and not futures:
            slots = [None]  # no worker yet (an adaptive cluster): the scheduler waits for one
        for addr in slots:
            if not ready:
                break
            prio, _, what, fn, args, key = heapq.heappop(ready)
            where = {} if addr is None else {"workers": [addr], "allow_other_workers": True}
            fut = client.submit(fn, *args, key=key, retries=retries, priority=-prio,
                                pure=False, **where)
            futures[fut] = (what, addr)
            ac.add(fut)

    def launch(node: Node) -> None:
        submitted.add(node)
        label, s, nug = node
        warm = plan.warm(node, done)
        fit = plan.cached_gls(node)
        if fit is not None:
            plan.outcomes[label].timings.append(_cached_timing("gls", label, s, nug))
            resolve(node, fit)
            return
        # among fits of one chain length, the longest first (what the same structure and
        # nugget took on another residual, in seconds): the paper-size mean residual's
        # rational + nugget (121 s) was the last of its table to start (at 641 s), and its
        # two GAMMs, one after the other, then ran alone from 767 to 939 s
        est = min(seconds.get((s, nug), 0.0), 1e5)
        queue(depth[node] + est * 1e-6, ("gls", node), _task_gls, scattered[label], s, nug, warm,
              plan.warm_search(node), shares,
              key=f"drivers-gls-{label}-{s}{'-nugget' if nug else ''}-{uuid.uuid4().hex[:10]}")

    def table_done(label: str) -> None:
        out, d = plan.outcomes[label], plan.data[label]
        _, ranked = out.table(plan.structures, plan.nuggets)
        best = ranked[0]
        if not (plan.gamm and d.smooth and math.isfinite(best.aic)):
            return
        gamm_best[label] = best
        if plan.cache is not None:
            sel = plan.cache.lookup(plan.gamm_key(label, best), GAMMSelection)
            if sel is not None:
                out.gamm = sel
                out.timings.append(_cached_timing("gamm", label, best.structure, best.nugget))
                return
        # the GAMM without the factor first: the one with it starts from its optimum
        queue_gamm(label, False, None)

    def queue_gamm(label: str, with_f: bool, start: GAMMFit | None) -> None:
        prio = 1 if with_f else _gamm_chain(plan, label)
        kind = "factor" if with_f else "plain"
        queue(prio, ("gamm", (label, with_f)), _task_gamm, scattered[label], gamm_best[label],
              with_f, shares, start,
              key=f"drivers-gamm-{label}-{kind}-{uuid.uuid4().hex[:10]}")

    def gamm_done(label: str, with_f: bool, fit: GAMMFit | None, exc=None) -> None:
        out, d = plan.outcomes[label], plan.data[label]
        if fit is None:
            out.excluded.append({"zstore": f"drivers ({label} residual) GAMM"
                                           f"{' with ' + d.factor if with_f else ''}",
                                 "reason": f"{type(exc).__name__}: {exc}"})
            gamm_parts[label][with_f] = None
        else:
            gamm_parts[label][with_f] = fit
        parts = gamm_parts[label]
        if not with_f and d.factor is not None:
            queue_gamm(label, True, fit)  # from the GLS fit if this one could not be made
            return
        need = [True, False] if d.factor is not None else [False]
        if not all(k in parts for k in need):
            return
        out.gamm_s = time.perf_counter() - t_start
        if d.factor is None:
            if parts[False] is not None:
                out.gamm = GAMMSelection(parts[False], None, parts[False], False,
                                         "no factor term")
        elif parts[True] is not None and parts[False] is not None:
            out.gamm = select_factor(parts[True], parts[False], d.factor, d.alpha)
        else:  # one of the two could not be made: the other one, said so
            kept = parts[True] or parts[False]
            if kept is not None:
                note = (f"{d.factor}: only the fit {'with' if kept is parts[True] else 'without'}"
                        " the factor could be made (see excluded.csv)")
                kept.notes.append(note)
                out.gamm = GAMMSelection(kept, parts[True], parts[False],
                                         kept is parts[False], note)
        if out.gamm is not None and plan.cache is not None and all(
                parts[k] is not None for k in need):
            plan.cache.store(plan.gamm_key(label, gamm_best[label]), out.gamm)

    try:
        for node in plan.nodes():
            if node not in submitted and not plan.sources[node]:
                launch(node)
        for label in plan.labels:
            if not any(n[0] == label for n in plan.nodes()):
                table_done(label)  # no correlated structure asked for: the GAMM only
        pump()
        for fut in ac:
            (kind, what), _ = futures.pop(fut)
            try:
                fit, timing = fut.result()
            except Exception as exc:  # noqa: BLE001 - a failed fit is excluded, the rest stands
                fit, timing = None, None
                err = exc
            if kind == "gls":
                label, s, nug = what
                out = plan.outcomes[label]
                if fit is None:
                    out.excluded.append({"zstore": f"drivers ({label} residual) GLS {s}"
                                                   f"{' + nugget' if nug else ''}",
                                         "reason": f"{type(err).__name__}: {err}"})
                    log.warning("GLS (%s residual) %s%s failed: %s", label, s,
                                " + nugget" if nug else "", err)
                else:
                    out.timings.append(rel(timing))
                    seconds[(s, nug)] = max(seconds.get((s, nug), 0.0), timing["seconds"])
                    if plan.cache is not None:
                        plan.cache.store(plan.keys[what], fit)
                resolve(what, fit)
            else:
                label, with_f = what
                if timing is not None:
                    plan.outcomes[label].timings.append(rel(timing))
                gamm_done(label, with_f, fit, None if fit is not None else err)
            pump()
    finally:
        for fut in list(futures):
            fut.cancel()
        try:
            client.run(clear_worker_resources)
        except Exception as exc:  # noqa: BLE001 - freeing memory never fails the stage
            log.warning("could not clear the workers' distance matrices: %s", exc)
    return plan.outcomes


def _depths(plan: Plan) -> dict[Node, int]:
    """Priority of each fit: the length of the longest chain of fits that waits on it (a
    fit others start from runs first), the residual's GAMMs included (:func:`_gamm_chain`)."""
    after: dict[Node, list[Node]] = {n: [] for n in plan.nodes()}
    for n, src in plan.sources.items():
        for s in src:
            after[s].append(n)
    memo: dict[Node, int] = {}

    def depth(n: Node) -> int:
        if n not in memo:
            memo[n] = 1 + max((depth(m) for m in after[n]), default=_gamm_chain(plan, n[0]))
        return memo[n]

    return {n: depth(n) for n in plan.nodes()}


def _gamm_chain(plan: Plan, label: str) -> int:
    """The GAMMs that follow a residual's table, one after the other: none, the GAMM, or
    the GAMM without the factor and then the one with it."""
    if not plan.gamm:
        return 0
    return 2 if plan.data[label].factor is not None else 1
