"""Benchmark: opening many stores over a high-latency object store, rhcloud's concurrent
opening against opening them one by one.

A world of ≥ 200 small flux stores (4 models with T42/T63 grids × rh, npp × 25 members, one
year) is served by the local GCS emulator behind ``rhcloud.testing.faultproxy.FaultProxy``,
which adds a fixed latency (default 50 ms) to every request, as a distant bucket would.
What is timed is the open phase of ``rhcloud.stages.climatology.collect_climatologies`` (catalog row →
opened store, lazy period mean, fx attached; everything before data is read on a cluster):

- ``concurrent``: ``open_concurrency`` threads (the config default, 16), as a run does;
- ``serial``: ``open_concurrency: 1`` — the same code opening each store after the last,
  i.e. the serial sum of the per-store open times.

The cluster is replaced by a stub whose "computation" returns at once, so that only the open
phase is on the clock (it ends when collect reports "opened N of N stores"). gcsfs' instance
cache is cleared before every measurement (no listing or session reuse across them); repeats
alternate the order. The store is fake-gcs-server (``rhcloud.testing.emulator``), which
serves requests concurrently, seeded from the world's directory; the report gives the
request counts and the latency floor (requests × latency / threads) to judge the result.

Run: ``python benchmarks/bench_open.py [--repeat 3] [--latency-ms 50] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import numpy as np  # noqa: E402

from rhcloud.config import Config  # noqa: E402
from rhcloud.stages.catalog import select_datasets  # noqa: E402
from rhcloud.stages.climatology import collect_climatologies  # noqa: E402
from rhcloud.storage.sessions import close_http_sessions  # noqa: E402
from rhcloud.testing.emulator import GCSEmulator, world_seed  # noqa: E402
from rhcloud.testing.faultproxy import FaultProxy  # noqa: E402
from rhcloud.world import WorldParams, generate_world  # noqa: E402

MODELS = ("BCC-ESM1", "CanESM5", "MIROC-ES2L", "MPI-ESM1-2-LR")  # the smallest grids
WORLD = WorldParams(models=MODELS, n_members=25, years=(1990, 1990),
                    truth_period=(1990, 1990), time_chunk=12, observations=None)


class _Done:
    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


class NoCompute:
    """Stands in for the Dask client: the open phase is what is timed, so "computing" a
    climatology returns a plausible constant field of its shape at once (100 g m-2 yr-1:
    zeros would be excluded by the value checks, "the flux is zero on every land cell")."""

    def compute(self, array):
        return _Done(np.full(array.shape, 100.0, dtype=array.dtype))


def open_phase(selection, config: Config) -> tuple[float, int]:
    """Seconds from the start of collect_climatologies to its "opened" report, and the
    number of datasets it could not open."""
    import gcsfs

    close_http_sessions()  # on their own loops: dropped open, gcsfs's finalizer would fail
    gcsfs.GCSFileSystem.clear_instance_cache()
    t0 = time.perf_counter()
    opened: list[float] = []

    def progress(msg: str) -> None:
        if msg.startswith("opened") and not opened:
            opened.append(time.perf_counter() - t0)

    collected = collect_climatologies(selection, config, client=NoCompute(),
                                      on_progress=progress)
    return opened[0], len(collected.excluded)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path,
                    default=Path(tempfile.gettempdir()) / "rhcloud-bench-open-world")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=Config().open_concurrency)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    root = generate_world(args.world, WORLD)
    world_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp, \
            GCSEmulator(Path(tmp) / "gcs", seed=world_seed(root)) as emulator:
        proxy = FaultProxy(emulator, latency=args.latency_ms / 1000.0)
        with proxy as url:
            opts = {"token": "anon", "endpoint_url": url}
            extra = {"cache": False} if "cache" in {
                f.name for f in dataclasses.fields(Config)} else {}
            base = dict(catalog="gs://cmip6/pangeo-cmip6.json", storage_options=opts,
                        models=list(MODELS), members="all", period=WORLD.truth_period,
                        output=str(Path(tmp) / "out"), **extra)
            cfg = {"concurrent": Config(**base, open_concurrency=args.concurrency),
                   "serial": Config(**base, open_concurrency=1)}
            selection = select_datasets(cfg["serial"]).datasets
            n_fx = int(selection["areacella_zstore"].nunique()
                       + selection["sftlf_zstore"].nunique())
            times: dict[str, list[float]] = {"concurrent": [], "serial": []}
            requests: dict[str, list[int]] = {"concurrent": [], "serial": []}
            failed: dict[str, list[int]] = {"concurrent": [], "serial": []}
            for k in range(args.repeat):
                order = ["concurrent", "serial"] if k % 2 == 0 else ["serial", "concurrent"]
                for name in order:
                    proxy.reset_counts()
                    seconds, n_failed = open_phase(selection, cfg[name])
                    times[name].append(seconds)
                    requests[name].append(proxy.counts()["requests"])
                    failed[name].append(n_failed)
                    print(f"repeat {k + 1}: {name:10s} {seconds:7.2f} s, "
                          f"{requests[name][-1]} requests", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "stores": len(selection),
        "fx_stores": n_fx,
        "latency_ms": args.latency_ms,
        "open_concurrency": args.concurrency,
        "repeat": args.repeat,
        "world_generation_s": world_s,
        "median_s": med,
        "runs_s": times,
        "requests": requests,
        "failed": failed,
        "ratio_concurrent_to_serial": med["concurrent"] / med["serial"],
        "speedup_serial_over_concurrent": med["serial"] / med["concurrent"],
        "serial_per_store_s": med["serial"] / len(selection),
        "latency_floor_concurrent_s": statistics.median(requests["concurrent"])
        * args.latency_ms / 1000.0 / args.concurrency,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
