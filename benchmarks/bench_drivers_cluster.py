"""The drivers stage on a cluster against in-process, on the paper-size run's fields.

    python benchmarks/bench_drivers_cluster.py prepare [--out /tmp/rhcloud-drivers-bench]
    python benchmarks/bench_drivers_cluster.py stage --mode in-process|cluster [--json F]
    python benchmarks/bench_drivers_cluster.py compare A.json B.json
    python benchmarks/bench_drivers_cluster.py scale F.json [--workers 2 11 22]
        (F: a ``stage`` JSON, or a run's ``tables/drivers_summary.json``)
    python benchmarks/bench_drivers_cluster.py memory --grid regular:4 [--mode cluster]

``prepare``: the paper-size run (``catalogs/paper.yaml`` on the demo world, as
``bench_paper.py``) with the drivers off, keeping its ``results.zarr`` (the residual fields and
covariates on T127). ``stage``: the drivers stage (``rhcloud.stages.drivers.run_drivers``, both
residuals, all five structures with and without nugget, exact likelihood) on those fields,
in this process or on a LocalCluster of 2 single-threaded workers; writes every fit (logLik,
range, nugget, coefficients, SEs) and its recorded seconds, evaluations and worker to a JSON.
It also runs the previous code (``PYTHONPATH=<an export of it>``: then ``--mode in-process``).
``compare``: two such JSONs fit by fit (chosen structure, logLik differences). ``scale``: from
a JSON's per-fit times and the fits' dependencies, the stage's wall time on k workers (list
scheduling by longest chain first, as the scheduler's priorities; each task pays its worker's
distance build) and the longest chain. ``memory``: the client's peak resident memory during
the drivers stage, on the fields regridded to ``--grid`` (a fresh process per call; the
LocalCluster's scheduler runs in the client process and is counted).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("/tmp/rhcloud-drivers-bench")
OPTIONS = {"structures": ["exponential", "gaussian", "spherical", "linear", "rational"],
           "residuals": ["median", "mean"], "distance": "great-circle"}


def prepare(out: Path) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_paper import paper_config

    from rhcloud.config import config_from_dict
    from rhcloud.pipeline import run
    from rhcloud.world import WorldParams, generate_world

    world = generate_world(ROOT / "demo-world", WorldParams())
    cfg = paper_config(world, str(out))
    cfg["drivers"] = {**cfg.get("drivers", {}), "residuals": []}
    run(config_from_dict(cfg), progress=print)
    return out / "results.zarr"


class PeakRSS:
    """This process's resident memory sampled every 20 ms (MiB): the peak above the start."""

    def __init__(self):
        self.start = self._now()
        self.peak = self.start
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _now() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._now())

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._now())


def _fits_json(outcome) -> list[dict]:
    rows = []
    for r in outcome.results:
        fits = [{"structure": f.structure, "nugget": bool(f.nugget), "loglik": f.loglik,
                 "aic": f.aic, "range": f.range, "nugget_value": f.nugget_value,
                 "coef": [float(c) for c in f.coef], "se": [float(c) for c in f.se],
                 "n_evals": f.n_evals, "seconds": f.seconds, "n": f.n,
                 "message": f.message} for f in r.gls_fits]
        g = r.gamm
        rows.append({
            "residual": r.residual_label, "n": int(r.best.n), "timings": r.timings,
            "best": [r.best.structure, bool(r.best.nugget)], "fits": fits,
            "fit_timings": getattr(r, "fit_timings", []),
            "gamm": None if g is None else {
                "loglik": g.fit.loglik, "aic": g.fit.aic, "range": g.fit.range,
                "nugget_value": g.fit.nugget_value, "decision": g.decision,
                "with": None if g.with_factor is None else
                [g.with_factor.loglik, g.with_factor.n_evals, g.with_factor.seconds],
                "without": None if g.without_factor is None else
                [g.without_factor.loglik, g.without_factor.n_evals, g.without_factor.seconds]}})
    return rows


def stage(fields_path: Path, mode: str, grid: str | None = None,
          structures: list[str] | None = None, gamm: bool = True) -> dict:
    import functools

    import xarray as xr

    try:  # this code's stage layout
        from rhcloud.config import DriversOptions
        from rhcloud.stages.drivers import run_drivers
    except ImportError:  # the previous code (3a0cfeb): options as a dict
        from rhcloud.drivers_stage import run_drivers

        def DriversOptions(**kw):  # noqa: N802
            return kw

    import rhcloud.drivers.api as api

    if not gamm:  # the GLS tables only (the stage itself always fits the GAMMs)
        for name in ("fit_residuals", "fit_drivers"):  # this code's, or the previous code's
            if hasattr(api, name):
                setattr(api, name, functools.partial(getattr(api, name), gamm=False))

    fields = xr.open_zarr(fields_path).compute()
    opts = dict(OPTIONS)
    if grid:
        opts["grid"] = grid
    if structures:
        opts["structures"] = structures
    client = cluster = None
    if mode == "cluster":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)
    r0 = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    try:
        kw = {"client": client} if client is not None else {}
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            outcome = run_drivers(fields, DriversOptions(**opts), **kw)
            wall = time.perf_counter() - t0
    finally:
        if client is not None:
            client.close()
            cluster.close()
    r1 = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    cpu = [b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(r0, r1, strict=True)]
    return {"mode": mode, "wall_s": wall, "cpu_s_client": cpu[0],
            "cpu_s_workers": cpu[1],  # the LocalCluster's worker processes, once they exited
            "client_rss_start_mib": mem.start,
            "client_rss_peak_mib": mem.peak, "excluded": outcome.excluded,
            "residuals": _fits_json(outcome), "load_avg": list(_loadavg())}


def _loadavg() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


def compare(a: dict, b: dict) -> None:
    for ra, rb in zip(a["residuals"], b["residuals"], strict=True):
        fa = {(f["structure"], f["nugget"]): f for f in ra["fits"]}
        fb = {(f["structure"], f["nugget"]): f for f in rb["fits"]}
        print(f"\n{ra['residual']} residual, n = {ra['n']} / {rb['n']}: best {ra['best']} / "
              f"{rb['best']}")
        print(f"{'structure':12} {'nugget':6} {'logLik A':>16} {'logLik B':>16} {'B - A':>10} "
              f"{'range A':>10} {'range B':>10} {'evals A':>7} {'evals B':>7} {'s A':>6} {'s B':>6}")
        for k in fa:
            x, y = fa[k], fb.get(k)
            if y is None:
                print(f"{k[0]:12} {k[1]!s:6} missing in B")
                continue
            print(f"{k[0]:12} {k[1]!s:6} {x['loglik']:16.6f} {y['loglik']:16.6f} "
                  f"{y['loglik'] - x['loglik']:10.2e} {x['range']:10.4g} {y['range']:10.4g} "
                  f"{x['n_evals']:7d} {y['n_evals']:7d} {x['seconds']:6.1f} {y['seconds']:6.1f}")
        ga, gb = ra["gamm"], rb["gamm"]
        if ga and gb:
            print(f"GAMM logLik {ga['loglik']:.6f} / {gb['loglik']:.6f} (B - A "
                  f"{gb['loglik'] - ga['loglik']:.2e}); {ga['decision']} / {gb['decision']}")
    print(f"\nwall A {a.get('wall_s', 0):.1f} s, B {b.get('wall_s', 0):.1f} s")


def simulate(tasks: dict, deps: dict, prio: dict, k: int) -> float:
    """Makespan of ``tasks`` (name -> seconds) on ``k`` workers: whenever a worker is free it
    takes the ready task of highest priority."""
    import heapq

    done_at: dict = {}
    free = [0.0] * k
    waiting = set(tasks)
    running: list = []  # (end, name)
    t = 0.0
    while waiting or running:
        ready = [n for n in waiting if all(d in done_at and done_at[d] <= t for d in deps[n])]
        ready.sort(key=lambda n: (-prio[n], n))
        idle = [i for i, f in enumerate(free) if f <= t]
        for i, n in zip(idle, ready, strict=False):
            free[i] = t + tasks[n]
            heapq.heappush(running, (free[i], n))
            waiting.discard(n)
        if not running:
            break
        end, n = heapq.heappop(running)
        done_at[n] = end
        t = max(t, end)
    return max(done_at.values(), default=0.0)


def scale(result: dict, workers: list[int], reference_s: float | None,
          use_cpu: bool = False) -> dict:
    """The stage's wall time on ``workers`` from the recorded per-fit times (``use_cpu``:
    each task's CPU seconds, what a single-threaded task takes on a core of its own; on a
    shared machine its wall seconds include waiting for a core)."""
    tasks, deps, builds, warm = {}, {}, {}, {}
    labels = [r["residual"] for r in result["residuals"]]
    for r in result["residuals"]:
        for t in r["fit_timings"]:
            name = (t["fit"], r["residual"], t["structure"], t["nugget"], t.get("factor"))
            sec = t.get("cpu_s", t["seconds"]) if use_cpu else t["seconds"]
            build = t.get("distance_build_s", 0.0)
            if use_cpu and t["seconds"] > 0:
                build *= sec / t["seconds"]  # the build's share, in CPU seconds
            tasks[name] = sec - build
            builds[name] = build
            warm[name] = t.get("warm", False)
    build = max(builds.values(), default=0.0)  # a fresh worker builds its distances once
    for name in tasks:
        kind, label, s, nug, _ = name
        d = []
        if kind == "gls" and warm[name]:  # cold fits (small tables) wait on nothing
            if label != labels[0]:
                d.append(("gls", labels[0], s, nug, None))
            if nug:
                d.append(("gls", label, s, False, None))
        elif kind == "gamm" and name[4]:  # with the factor: after the GAMM without it
            d = [("gamm", label, s, nug, False)]
        elif kind == "gamm":
            d = [n for n in tasks if n[0] == "gls" and n[1] == label]
        deps[name] = [x for x in d if x in tasks]
    after = {n: [m for m in tasks if n in deps[m]] for n in tasks}
    memo: dict = {}

    def chain(n) -> float:  # longest remaining chain from n, seconds
        if n not in memo:
            memo[n] = tasks[n] + build + max((chain(m) for m in after[n]), default=0.0)
        return memo[n]

    prio = {n: chain(n) for n in tasks}
    out = {"longest_chain_s": max(prio.values(), default=0.0), "distance_build_s": build,
           "sum_of_fits_s": sum(tasks.values())}
    for k in workers:
        out[f"{k}_workers_s"] = simulate({n: tasks[n] + build for n in tasks}, deps, prio, k)
        if reference_s:
            out[f"{k}_workers_ratio"] = out[f"{k}_workers_s"] / reference_s
    return out


def _as_stage(doc):
    """A ``stage`` JSON as it is; a run's ``tables/drivers_summary.json`` (a list, one entry
    per residual, its per-fit timings under ``fits``) in the shape ``scale`` reads."""
    if isinstance(doc, dict):
        return doc
    return {"residuals": [{"residual": r["residual"], "fit_timings": r["fits"]} for r in doc]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["prepare", "stage", "compare", "scale", "memory"])
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--mode", choices=["in-process", "cluster"], default="cluster")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--grid", default=None)
    p.add_argument("--structures", default=None)
    p.add_argument("--workers", type=int, nargs="+", default=[2, 11, 22])
    p.add_argument("--reference", type=float, default=None,
                   help="in-process stage seconds to state the ratios against")
    p.add_argument("--no-gamm", action="store_true", help="stage/memory: the GLS tables only")
    p.add_argument("--cpu", action="store_true",
                   help="scale: per-fit CPU seconds instead of wall seconds")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.part == "prepare":
        print(prepare(a.out))
        return 0
    fields = a.out / "results.zarr"
    if a.part in ("stage", "memory"):
        structs = a.structures.split(",") if a.structures else None
        res = stage(fields, a.mode, a.grid, structs, gamm=not a.no_gamm)
        res["n"] = [r["n"] for r in res["residuals"]]
        res["grid"] = a.grid
        text = json.dumps(res, indent=1, default=float)
        if a.json:
            a.json.write_text(text)
        print(json.dumps({k: v for k, v in res.items() if k != "residuals"}, default=float))
        return 0
    docs = [_as_stage(json.loads(f.read_text())) for f in a.files]
    if a.part == "compare":
        compare(docs[0], docs[1])
    else:
        print(json.dumps(scale(docs[0], a.workers, a.reference, a.cpu), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
