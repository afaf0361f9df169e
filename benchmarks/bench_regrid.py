"""Benchmark: regridding every model's 2-D climatology to the reference grid, against reading
the same data from local Zarr stores, measured in one run.

For each of the 13 model grids, float32 random land-masked fields are written to Zarr in a
temporary directory: the 2-D climatology (flux + land fraction) and the monthly series it is
made from (252 months, 1990-2010). Reported (medians over ``--repeat`` runs, seconds):

- ``read_2d``: open the 2-D store and load flux + landfrac (the bytes that are regridded);
- ``read_monthly``: open the monthly store and load it (the bytes the pipeline reads);
- ``exact``: ``regrid_land_weighted(method="exact")`` to T127, weights included;
- ``xarray_regrid``: the same with ``method="xarray-regrid"``;
- ``rel_error_*``: the land total's relative error (conservation) of each method.

Run: ``python benchmarks/bench_regrid.py [--repeat 5] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import xarray as xr

from rhcloud.core import grids
from rhcloud.core.conservative import conservation_check, regrid_land_weighted

N_MONTHS = 252


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _regrid(data: xr.Dataset, src: xr.Dataset, dst: xr.Dataset, method: str) -> xr.Dataset:
    return regrid_land_weighted(data["rh"], data["sftlf"], src, dst, method=method).load()


def _write_stores(root: Path, name: str, grid: xr.Dataset, rng: np.random.Generator,
                  monthly: bool) -> tuple[Path, Path | None]:
    shape = (grid.sizes["lat"], grid.sizes["lon"])
    landfrac = np.where(rng.random(shape) < 0.6, 0.0, rng.random(shape)).astype(np.float32)
    flux = np.where(landfrac > 0, 100 + 400 * rng.random(shape), np.nan).astype(np.float32)
    coords = {"lat": grid["lat"], "lon": grid["lon"]}
    p2d = root / f"{name}_2d.zarr"
    xr.Dataset({"rh": (("lat", "lon"), flux), "sftlf": (("lat", "lon"), landfrac)},
               coords=coords).to_zarr(p2d, mode="w", zarr_format=2, consolidated=True)
    if not monthly:
        return p2d, None
    series = (flux[None] * (0.5 + rng.random((N_MONTHS, *shape)))).astype(np.float32)
    pm = root / f"{name}_monthly.zarr"
    xr.Dataset({"rh": (("time", "lat", "lon"), series)}, coords=coords).chunk(
        {"time": 12}).to_zarr(pm, mode="w", zarr_format=2, consolidated=True)
    return p2d, pm


def run(repeat: int, monthly: bool) -> dict[str, dict[str, float]]:
    dst = grids.model_grid("CNRM-ESM2-1")
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in grids.MODEL_GRIDS:
            src = grids.model_grid(name)
            p2d, pm = _write_stores(Path(tmp), name, src, rng, monthly)

            def read_2d(path: Path = p2d) -> xr.Dataset:
                with xr.open_zarr(path) as ds:
                    return ds.load()

            data = read_2d()
            row = {"read_2d": _median_time(read_2d, repeat)}
            if pm is not None:
                def read_monthly(path: Path = pm) -> xr.Dataset:
                    with xr.open_zarr(path) as ds:
                        return ds.load()
                row["read_monthly"] = _median_time(read_monthly, max(1, repeat // 2))
            for method, key in (("exact", "exact"), ("xarray-regrid", "xarray_regrid")):
                row[key] = _median_time(
                    partial(_regrid, data, src, dst, method), repeat)
            for method, key in (("exact", "rel_error_exact"),
                                ("xarray-regrid", "rel_error_xarray_regrid")):
                out = _regrid(data, src, dst, method)
                row[key] = conservation_check(name, "bench", data["rh"], data["sftlf"], src,
                                              out, dst)["rel_error"]
            results[name] = row
            print(f"{name:14s} " + "  ".join(
                f"{k} {v:+.1e}" if k.startswith("rel_") else f"{k} {v * 1e3:7.2f} ms"
                for k, v in row.items()), flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-monthly", action="store_true", help="skip the monthly stores")
    ap.add_argument("--json", type=Path, help="write the per-model medians here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = run(args.repeat, monthly=not args.no_monthly)
    totals = {k: sum(r[k] for r in results.values()) for k in next(iter(results.values()))
              if not k.startswith("rel_")}
    for key in ("rel_error_exact", "rel_error_xarray_regrid"):
        print(f"max |{key}| over the 13 models: "
              f"{max(abs(r[key]) for r in results.values()):.1e}")
    print("\nsum over the 13 models (of per-model medians):")
    for k, v in totals.items():
        print(f"  {k:14s} {v:8.3f} s")
    print(f"  exact / read_2d        {totals['exact'] / totals['read_2d']:.2f}")
    if "read_monthly" in totals:
        print(f"  exact / read_monthly   {totals['exact'] / totals['read_monthly']:.4f}")
    print(f"  xarray_regrid / exact  {totals['xarray_regrid'] / totals['exact']:.2f}")
    print(f"(benchmark wall time {time.perf_counter() - t0:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps({"per_model": results, "totals": totals}, indent=1))


if __name__ == "__main__":
    main()
