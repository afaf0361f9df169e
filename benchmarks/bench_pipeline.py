"""Benchmark: rhcloud's data stages against (a) reading the same input chunks once on the same
cluster, (b) the paper's tool chain, CDO ``timmean`` + ``remapcon`` per dataset, and (c) what a
hub user writes by hand for the same data on the same cluster (intake-esm + xarray +
xarray-regrid).

On the demo world (13 models, first members, rh + npp), one LocalCluster (2 workers):

- ``read``: open every selected store and read + decompress the period's chunks once
  (a sum per chunk, gathered), all datasets in one submission; then read each observation
  product and covariate file once through its reader;
- ``stages``: ``rhcloud.run`` with the same client; the data stages are catalog +
  climatology + regrid + ensemble + observations + evaluation (its own timings; the report
  and file writing excluded); ``stages_models`` is catalog + climatology + regrid +
  ensemble, the part the CDO chain and the hand-written side also do;
- ``hub``: the hand-written side, timed end to end with the same client (:func:`hub`):
  ``intake.open_esm_datastore`` on the same catalog, ``.search`` for the same models,
  experiment, table, variables and first members, ``to_dataset_dict`` (zarr, consolidated,
  ``chunks={}``: the stores' own chunks), per dataset a month-length weighted time mean over
  the period (``time.dt.days_in_month``, the calendars as they come), xarray-regrid's
  conservative regridding onto the same reference grid, and the median over models of rh and
  of npp, computed on the cluster. It does less than rhcloud: no land fractions or cell
  areas (ocean cells stored as 0, as CanESM5's are, count as values), no units, sign, range
  or period checks, no conservation table, no observation products, covariates or
  evaluation, no per-dataset isolation of failures. One fix a user has to make is in it:
  MIROC-ES2L's rh is listed in two versions, and ``to_dataset_dict`` then fails
  (``ESMDataSourceError: Failed to load dataset with
  key='CMIP.MIROC.MIROC-ES2L.historical.Lmon.gn'``, from xarray's ``ValueError: Could not
  find any dimension coordinates to use to order the Dataset objects for concatenation``),
  so the search result keeps the newest version of each dataset;
- ``cdo_serial`` / ``cdo_parallel2``: for NetCDF copies of the same stores (written before,
  not timed), ``cdo -remapcon,<T127> -timmean -selyear,y0/y1`` per dataset, one at a time
  and two at a time (2 cores).

The read, one rhcloud run and one hand-written run go first, untimed (warm caches and
workers; the hand-written run's datasets are checked against rhcloud's selection). Repeats
alternate the order; medians and ratios are reported. ``--profile`` adds one more rhcloud
run under cProfile (the client's main thread, same client) and prints where its time goes,
by stage function. Run:
``python benchmarks/bench_pipeline.py [--repeat 3] [--json docs/bench_pipeline.json]
[--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import intake
import numpy as np
import xarray as xr
import xarray_regrid  # noqa: F401 - registers the ``.regrid`` accessor

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
    """(catalog → evaluation, catalog → ensemble) in seconds: the second is the part that
    does what the CDO chain and the hand-written side do (time mean, remap and, for the
    hand-written side, the statistics across models)."""
    return stage_times(run(config, client=client).timings)


def stage_times(t: dict[str, float]) -> tuple[float, float]:
    models = t["catalog"] + t["climatology"] + t["regrid"] + t["ensemble"]
    return models + t["observations"] + t["evaluate"], models


HUB_MEMBERS = ["r1i1p1f1", "r1i1p1f2"]
"""The first members, as a user reads them off the catalog (the check in ``main`` makes sure
they are the ones rhcloud selects)."""
DATASET_KEY = ["source_id", "member_id", "variable_id", "grid_label"]


def hub(config, target: xr.Dataset) -> tuple[float, xr.Dataset, list[str]]:
    """The hand-written side, what a hub user without rhcloud writes for the same work:
    (seconds end to end, the medians over models of rh and npp on ``target`` (computed),
    the stores it read). The dask client in use (the benchmark's) computes it.

    It does less than rhcloud's models part: no land fractions or cell areas (an ocean
    stored as 0 counts as values), no units, sign, range or period checks, no conservation
    table, no isolation of a failing dataset. Only the catalog's path, the models, the
    experiment, the table, the variables and the period come from the run's config."""
    t0 = time.perf_counter()
    cat = intake.open_esm_datastore(config.catalog)
    sub = cat.search(source_id=config.model_list, experiment_id=config.experiment,
                     table_id=config.table, variable_id=list(config.variables),
                     member_id=HUB_MEMBERS)
    # MIROC-ES2L's rh is listed in two versions and to_dataset_dict fails on it
    # ("Could not find any dimension coordinates to use to order the Dataset objects for
    # concatenation"): keep the newest version of each dataset, as a user then does
    sub.esmcat._df = sub.df.sort_values("version").drop_duplicates(DATASET_KEY, keep="last")
    dsets = sub.to_dataset_dict(xarray_open_kwargs={"consolidated": True, "chunks": {}},
                                progressbar=False)
    y0, y1 = config.period
    fields = []
    for key in sorted(dsets):
        ds = dsets[key][list(config.variables)].squeeze(drop=True)  # member_id, dcpp_init_year
        ds = ds.sel(time=slice(str(y0), str(y1)))
        clim = ds.weighted(ds.time.dt.days_in_month).mean("time")
        fields.append(clim.regrid.conservative(target))
    median = xr.concat(fields, dim="model").median("model").compute()
    return time.perf_counter() - t0, median, sorted(sub.df["zstore"])


STAGE_FUNCTIONS = (("catalog", "select_datasets"), ("ingest", "open_inputs"),
                   ("regrid", "regrid_stream"), ("regrid", "observations_to_reference"),
                   ("ensemble", "reference_fields"), ("ensemble", "build"),
                   ("evaluate", "evaluate"))
"""The stage calls of ``rhcloud.pipeline.run`` that its data stages' timings cover (the
climatologies are computed inside ``regrid_stream``, which draws them from the
``iter_climatologies`` generator)."""
WAITS = ("<method 'acquire' of '_thread.lock' objects>",
         "<method 'acquire' of '_thread.RLock' objects>")


def _label(func: tuple[str, int, str]) -> str:
    path, _, name = func
    if path == "~":
        return name
    parts = Path(path).with_suffix("").parts
    if "rhcloud" in parts:
        parts = parts[parts.index("rhcloud"):]
    elif "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    else:
        parts = parts[-2:]
    return f"{'.'.join(parts)}.{name}"


def profile_stages(config, client, top: int = 3, depth: int = 4, min_s: float = 0.2) -> dict:
    """One ``rhcloud.run`` with ``client`` under cProfile (this process's main thread: the
    client's critical path; the store openings run in threads, seen here as the wait for
    them): its timings, the time the main thread was blocked on locks (waiting for the
    cluster's results or for the opening threads) and, per stage function, its cumulative
    time with its largest callees (``depth`` levels below the stage, rhcloud's functions
    expanded, ``top`` per level, at least ``min_s``; below the first level in proportion).
    cProfile slows the client's Python: its timings run above the unprofiled ones."""
    prof = cProfile.Profile()
    prof.enable()
    result = run(config, client=client)
    prof.disable()
    stats = pstats.Stats(prof).stats
    callees: dict = {}
    for func, (*_, callers) in stats.items():
        for caller, edge in callers.items():
            callees.setdefault(caller, {})[func] = edge[3]  # cumulative seconds of the edge

    def tree(func, level: int, share: float) -> list:
        """``func``'s largest callees; ``share``: the part of ``func``'s time spent on this
        path (cProfile keeps one level of callers: deeper levels are attributed in
        proportion, as gprof does)."""
        out = []
        ranked = sorted(callees.get(func, {}).items(), key=lambda kv: -kv[1])[:top]
        for callee, seconds in ranked:
            seconds *= share
            if seconds < min_s:
                continue
            below = []
            if level < depth and "rhcloud" in callee[0] and stats[callee][3] > 0:
                below = tree(callee, level + 1, seconds / stats[callee][3])
            out.append({"function": _label(callee), "cum_s": seconds, "callees": below})
        return sorted(out, key=lambda e: -e["cum_s"])

    stages = {}
    for module, name in STAGE_FUNCTIONS:
        found = [f for f in stats if f[2] == name
                 and Path(f[0]).parts[-3:] == ("rhcloud", "stages", f"{module}.py")]
        if found:
            stages[f"{module}.{name}"] = {"cum_s": stats[found[0]][3],
                                          "callees": tree(found[0], 1, 1.0)}
    whole, models = stage_times(result.timings)
    return {"timings_s": dict(result.timings), "stages_s": whole, "stages_models_s": models,
            "main_thread_blocked_s": sum(v[2] for f, v in stats.items() if f[2] in WAITS),
            "stage_functions": stages}


def print_profile(profile: dict, read_s: float | None) -> None:
    t = profile["timings_s"]
    beyond = f"; the plain read's median: {read_s:.2f} s" if read_s else ""
    print(f"profile (one rhcloud run under cProfile, same client): data stages "
          f"{profile['stages_s']:.2f} s, models part {profile['stages_models_s']:.2f} s"
          f"{beyond}")
    print("  timings: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    print(f"  main thread blocked on locks (waiting for the cluster or the opening threads): "
          f"{profile['main_thread_blocked_s']:.2f} s")

    def show(entries, indent):
        for e in entries:
            print(f"{' ' * indent}{e['cum_s']:6.2f} s  {e['function']}")
            show(e["callees"], indent + 2)

    for name, stage in profile["stage_functions"].items():
        print(f"  {stage['cum_s']:6.2f} s  {name}")
        show(stage["callees"], 4)


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


G_PER_KG_S_PER_YR = 1000.0 * 86400.0 * 365.25  # kg m-2 s-1 → g m-2 yr-1 (Julian year)


def agreement(hub_median: xr.Dataset, results: xr.Dataset) -> dict:
    """The hand-written rh median against rhcloud's per-cell median over the same datasets,
    on the reference grid's all-land cells (reference_landfrac ≥ 0.99): the median and the
    5th and 95th percentiles of hub / rhcloud (the hand-written side in g m-2 yr-1 with a
    365.25-day year; rhcloud uses each calendar's year)."""
    ours = np.nanmedian(np.asarray(results["rh"].transpose("dataset", "lat", "lon")), axis=0)
    land = np.asarray(results["reference_landfrac"]) >= 0.99
    theirs = np.asarray(hub_median["rh"]) * G_PER_KG_S_PER_YR
    ok = land & np.isfinite(ours) & np.isfinite(theirs) & (ours > 0)
    ratio = theirs[ok] / ours[ok]
    return {"cells": int(ok.sum()), "median": float(np.median(ratio)),
            "p5": float(np.percentile(ratio, 5)), "p95": float(np.percentile(ratio, 95))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--world", type=Path, default=Path("demo-world"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--profile", action="store_true",
                    help="after the repeats, one rhcloud run under cProfile (same client): "
                         "where the client's time goes, by stage function")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    # intake-esm's combine_by_coords call warns of xarray's coming default, once per dataset
    warnings.filterwarnings("ignore", category=FutureWarning, module="intake_esm")
    root = generate_world(args.world, WorldParams())
    config = load_config(root / "run.yaml")
    config.cache = False  # every repeat computes every climatology
    config.drivers.residuals = []  # the drivers have their own benchmark
    selection, _ = catalog.select(catalog.open_catalog(config.catalog).df, config)
    times: dict[str, list[float]] = {"read": [], "stages": [], "stages_models": [], "hub": [],
                                     "cdo_serial": [], "cdo_parallel2": []}
    with tempfile.TemporaryDirectory() as tmp, \
            LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        tmp = Path(tmp)
        config.output = str(tmp / "out")
        copies = netcdf_copies(selection, tmp) if shutil.which("cdo") else []
        grid_file = tmp / "ref.txt"
        reference = reference_grid(config.reference_grid)
        grid_file.write_text(grids.cdo_grid_text(reference))
        # warm caches and workers once (untimed): the read, one rhcloud run, one hub run
        read_once(selection, config, client)
        warm = run(config, client=client)
        _, hub_median, hub_stores = hub(config, reference)
        assert hub_stores == sorted(selection["zstore"]), (hub_stores, selection["zstore"])
        agree = agreement(hub_median, warm.results)
        del warm, hub_median
        for k in range(args.repeat):
            order = ["read", "stages", "hub"]
            for name in order if k % 2 == 0 else order[::-1]:
                if name == "read":
                    times[name].append(read_once(selection, config, client))
                elif name == "hub":
                    times[name].append(hub(config, reference)[0])
                else:
                    whole, models = data_stages(config, client)
                    times["stages"].append(whole)
                    times["stages_models"].append(models)
            if copies:
                times["cdo_serial"].append(cdo_run(copies, grid_file, config.period, tmp, 1))
                times["cdo_parallel2"].append(cdo_run(copies, grid_file, config.period, tmp,
                                                      2))
        profile = profile_stages(config, client) if args.profile else None
    med = {k: statistics.median(v) for k, v in times.items() if v}
    report = {
        "datasets": len(selection),
        "repeat": args.repeat,
        "median_s": med,
        "runs_s": times,
        "hub_rh_median_over_rhcloud": agree,
    }
    if "read" in med:
        report["ratio_stages_to_read"] = med["stages"] / med["read"]
        report["ratio_hub_to_models"] = med["hub"] / med["stages_models"]
        report["ratio_hub_to_stages"] = med["hub"] / med["stages"]
    if "cdo_serial" in med:
        report["ratio_models_to_cdo_serial"] = med["stages_models"] / med["cdo_serial"]
        report["ratio_models_to_cdo_parallel2"] = med["stages_models"] / med["cdo_parallel2"]
        report["cdo_serial_per_dataset_s"] = med["cdo_serial"] / len(selection)
    if profile is not None:
        report["profile"] = profile
    print(json.dumps({k: v for k, v in report.items() if k != "profile"}, indent=2))
    if profile is not None:
        print_profile(profile, med.get("read"))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
