"""The paper-size run (catalogs/paper.yaml: 13 models, CNRM-ESM2-1 grid, drivers on the whole
residual field) timed on the demo world, which has the paper's models, grid and products.

    python benchmarks/bench_paper.py [--world demo-world] [--output /tmp/rhcloud-paper]

The config is catalogs/paper.yaml with only the data locations swapped for the world's
(catalog, products, NPP reference, covariates); the cache is ignored (``resume: false``), so
every climatology is computed. Prints the stage timings (s), the drivers' cell count, the
machine's load average (1, 5, 15 min) at the start and the end, and the machine's speed: one
Cholesky factorization of a paper-size (7,458 x 7,458) correlation matrix on one core, in
float64 and float32 (the fits' unit of work: runs on different machines compare through it); the drivers' fits run on the
run's cluster, each fit's seconds, evaluations and worker are in
``<output>/tables/drivers_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from rhcloud import run
from rhcloud.config import config_from_dict
from rhcloud.world import WorldParams, generate_world

ROOT = Path(__file__).resolve().parents[1]
LOCATIONS = ("catalog", "products", "npp_reference", "covariates")


def paper_config(world: Path, output: str) -> dict:
    paper = yaml.safe_load((ROOT / "catalogs" / "paper.yaml").read_text())
    demo = yaml.safe_load((world / "run.yaml").read_text())
    paper.update({k: demo[k] for k in LOCATIONS}, output=output, resume=False)
    return paper


def cholesky_seconds(n: int = 7458, repeat: int = 2) -> dict[str, float]:
    """Best of ``repeat`` single-core Cholesky factorizations (s) of an exponential
    correlation matrix of ``n`` random points on the sphere, float64 and float32."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 3))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    c = np.exp(-np.sqrt(np.maximum(2.0 - 2.0 * (z @ z.T), 0.0)) / 0.2)
    out = {}
    with threadpool_limits(1):
        for name, dtype, potrf in (("float64", np.float64, lapack.dpotrf),
                                   ("float32", np.float32, lapack.spotrf)):
            a = c.astype(dtype)
            best = np.inf
            for _ in range(repeat):
                b = a.copy()
                t = time.perf_counter()
                _, info = potrf(b.T, lower=1, overwrite_a=1, clean=0)
                best = min(best, time.perf_counter() - t)
                assert info == 0
            out[name] = round(best, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--world", type=Path, default=ROOT / "demo-world")
    p.add_argument("--output", default="/tmp/rhcloud-paper")
    args = p.parse_args()
    world = generate_world(args.world, WorldParams())
    config = config_from_dict(paper_config(world, args.output))
    load0 = os.getloadavg()
    speed = cholesky_seconds()
    t0 = time.perf_counter()
    result = run(config, progress=lambda m: print(f"[{time.perf_counter() - t0:7.1f} s] {m}",
                                                           flush=True))
    wall = time.perf_counter() - t0
    n = sorted({int(x) for x in result.tables.get("gls_aic", {"n": []})["n"]})
    print(json.dumps({"wall_s": round(wall, 1),
                      "stages_s": {k: round(v, 1) for k, v in result.timings.items()},
                      "datasets": len(result.collected.datasets), "drivers_cells": n,
                      "load_avg_start_end": [load0, os.getloadavg()],
                      "cholesky_1core_s_at_7458": speed},
                     indent=2))


if __name__ == "__main__":
    main()
