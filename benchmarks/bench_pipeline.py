"""Benchmark: rhcloud's data stages against (a) reading the same input chunks once on the same
cluster and (b) the paper's tool chain, CDO ``timmean`` + ``remapcon`` per dataset.

On the demo world (13 models, first members, rh + npp), one LocalCluster (2 workers):

- ``read``: open every selected store and read + decompress the period's chunks once
  (a sum per chunk, gathered), all datasets in one submission; then read each observation
  product and covariate file once through its reader;
- ``stages``: ``rhcloud.run`` with the same client; the data stages are catalog +
  climatology + regrid + evaluation (its own timings; the report and file writing excluded);
  ``stages_models`` is catalog + climatology + regrid, the part the CDO chain also does;
- ``cdo_serial`` / ``cdo_parallel2``: for NetCDF copies of the same stores (written before,
  not timed), ``cdo -remapcon,<T127> -timmean -selyear,y0/y1`` per dataset, one at a time
  and two at a time (2 cores).

Repeats alternate the order; medians and ratios are reported. Run:
``python benchmarks/bench_pipeline.py [--repeat 3] [--json docs/bench_pipeline.json]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from rhcloud import run
from rhcloud.config import load_config
from rhcloud.core import grids
from rhcloud.core.timeaxis import select_period
from rhcloud.stages import catalog
from rhcloud.stages.ingest import open_store, start_reads
from rhcloud.stages.regrid import reference_grid
from rhcloud.world import WorldParams, generate_world


def read_once(selection, config, client) -> float:
    """Seconds to read and decompress every selected dataset's period chunks once, and each
    observation product and covariate once through its reader (the fine rasters are
    block-averaged as they are read), all submitted together, the stores opened
    concurrently: the fastest plain read of the run's inputs."""
    t0 = time.perf_counter()
    reads = start_reads(config)  # the files: persisted on the cluster, reading starts now

    def period_sum(row):
        ds = open_store(row["zstore"], config.storage_options)
        inside = select_period(ds["time"], config.period)
        return ds[row["variable_id"]].isel(time=np.flatnonzero(inside)).data.sum()

    with ThreadPoolExecutor(config.open_concurrency) as pool:
        arrays = list(pool.map(period_sum, [r for _, r in selection.iterrows()]))
    client.gather(client.compute(arrays))
    for _, ds in [*reads.products, *reads.npp, *reads.covariates]:
        ds.compute()
    assert not reads.excluded, reads.excluded
    return time.perf_counter() - t0


def data_stages(config, client) -> tuple[float, float]:
    """(catalog → evaluation, catalog → regrid) in seconds: the second is the part that
    does what the CDO chain does (time mean and remap of the model datasets)."""
    result = run(config, client=client)
    t = result.timings
    models = t["catalog"] + t["climatology"] + t["regrid"] + t["ensemble"]
    return models + t["observations"] + t["evaluate"], models


def netcdf_copies(selection, workdir: Path) -> list[tuple[Path, str]]:
    out = []
    for i, row in selection.reset_index(drop=True).iterrows():
        path = workdir / f"d{i:03d}.nc"
        var = row["variable_id"]
        ds = xr.open_zarr(row["zstore"].removeprefix("file://"), decode_times=False)
        ds[[var, "time_bnds", "lat_bnds", "lon_bnds"]].load().to_netcdf(path)
        out.append((path, var))
    return out


def cdo_run(copies, grid_file: Path, period, workdir: Path, parallel: int) -> float:
    y0, y1 = period

    def one(item):
        path, var = item
        subprocess.run(["cdo", "-s", "-O", f"-remapcon,{grid_file}", "-timmean",
                        f"-selyear,{y0}/{y1}", f"-selvar,{var}", str(path),
                        str(workdir / f"out_{path.name}")], check=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, copies))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--world", type=Path, default=Path("demo-world"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    root = generate_world(args.world, WorldParams())
    config = load_config(root / "run.yaml")
    config.cache = False  # every repeat computes every climatology
    config.drivers.residuals = []  # the drivers have their own benchmark
    selection, _ = catalog.select(catalog.open_catalog(config.catalog).df, config)
    times: dict[str, list[float]] = {"read": [], "stages": [], "stages_models": [],
                                     "cdo_serial": [], "cdo_parallel2": []}
    with tempfile.TemporaryDirectory() as tmp, \
            LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        tmp = Path(tmp)
        config.output = str(tmp / "out")
        copies = netcdf_copies(selection, tmp) if shutil.which("cdo") else []
        grid_file = tmp / "ref.txt"
        grid_file.write_text(grids.cdo_grid_text(reference_grid(config.reference_grid)))
        read_once(selection, config, client)  # warm caches and workers once
        for k in range(args.repeat):
            order = ["read", "stages"] if k % 2 == 0 else ["stages", "read"]
            for name in order:
                if name == "read":
                    times[name].append(read_once(selection, config, client))
                else:
                    whole, models = data_stages(config, client)
                    times["stages"].append(whole)
                    times["stages_models"].append(models)
            if copies:
                times["cdo_serial"].append(cdo_run(copies, grid_file, config.period, tmp, 1))
                times["cdo_parallel2"].append(cdo_run(copies, grid_file, config.period, tmp,
                                                      2))
    med = {k: statistics.median(v) for k, v in times.items() if v}
    report = {
        "datasets": len(selection),
        "repeat": args.repeat,
        "median_s": med,
        "runs_s": times,
        "ratio_stages_to_read": med["stages"] / med["read"],
    }
    if "cdo_serial" in med:
        report["ratio_models_to_cdo_serial"] = med["stages_models"] / med["cdo_serial"]
        report["ratio_models_to_cdo_parallel2"] = med["stages_models"] / med["cdo_parallel2"]
        report["cdo_serial_per_dataset_s"] = med["cdo_serial"] / len(selection)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
