"""Members scaling: the same run over worlds with 13, 65 and 260 rh member-datasets (13 models
× 1, 5, 20 members, 1989–1992): wall time per dataset and the client's peak memory.

    python benchmarks/bench_members.py [--members 1 5 20] [--repeat 3] [--root /tmp/rhcloud-members]

Each measurement runs in a fresh process (a LocalCluster of 2 single-threaded workers, no
cache, no products so every stage's work scales with the datasets), sizes interleaved across
repeats so that the machine's load drifts over all of them alike. Reported: medians of the
climatology stage (catalog through climatologies) and of the data stages (through evaluation)
per dataset, and the client process's peak RSS (workers are other processes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rhcloud.world import WorldParams, generate_world

PARAMS = dict(years=(1989, 1992), truth_period=(1990, 1991), time_chunk=12, variables=("rh",),
              observations=None)


class PeakRSS:
    """The process's largest resident set size (MiB), sampled every 20 ms in a thread."""

    def __init__(self) -> None:
        import psutil

        self._proc, self.peak, self._stop = psutil.Process(), 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def one(world: Path) -> dict:
    from rhcloud import run
    from rhcloud.config import Config

    with tempfile.TemporaryDirectory() as out, PeakRSS() as rss:
        config = Config(catalog=str(world / "local-cmip6.json"), models="all", members="all",
                        variables=["rh"], period=(1990, 1991), cache=False, output=out,
                        cluster={"kind": "local", "n_workers": 2, "threads_per_worker": 1})
        t0 = time.perf_counter()
        result = run(config)
        wall = time.perf_counter() - t0
    n = len(result.collected.datasets)
    t = result.timings
    return {"datasets": n, "wall_s": wall,
            "climatology_per_dataset_s": (t["catalog"] + t["climatology"]) / n,
            "data_stages_per_dataset_s": sum(t[k] for k in ("catalog", "climatology", "regrid",
                                                            "evaluate")) / n,
            "client_peak_rss_mb": rss.peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--members", type=int, nargs="+", default=[1, 5, 20])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "rhcloud-members")
    p.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    worlds = {m: generate_world(args.root / f"m{m}", WorldParams(n_members=m, **PARAMS))
              for m in args.members}
    runs: dict[int, list[dict]] = {m: [] for m in args.members}
    for _ in range(args.repeat):
        for m, world in worlds.items():
            out = subprocess.run([sys.executable, __file__, "--one", str(world)], check=True,
                                 capture_output=True, text=True).stdout
            runs[m].append(json.loads(out.strip().splitlines()[-1]))
    keys = ("climatology_per_dataset_s", "data_stages_per_dataset_s", "client_peak_rss_mb",
            "wall_s")
    table = {m: {"datasets": r[0]["datasets"],
                 **{k: statistics.median(x[k] for x in r) for k in keys}}
             for m, r in runs.items()}
    small, large = table[args.members[0]], table[args.members[-1]]
    print(json.dumps({"medians": table, "ratio_largest_to_smallest": {
        k: large[k] / small[k] for k in keys[:3]}}, indent=2))


if __name__ == "__main__":
    main()
