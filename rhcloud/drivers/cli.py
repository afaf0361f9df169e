"""``rhcloud drivers TABLE --response COL ...``: GLS AIC table and GAMM on a table of cells.

The lead's CLI calls :func:`add_parser` on its subparsers and dispatches to :func:`run`;
``python -m rhcloud.drivers.cli TABLE ...`` runs it standalone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .correlation import STRUCTURES


def _csv_list(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``drivers`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "drivers", help="spatial GLS model selection and GAMM of a residual field",
        description="Fit the GLS AIC table over nlme correlation structures and a GAMM "
                    "(smooths + factor) with the best one; write tables/ and figures/.")
    _arguments(p)
    p.set_defaults(func=run)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", type=Path,
                   help="CSV or Parquet with lon, lat (degrees) and the columns, or a "
                        "results.zarr directory (then --response is a variable name)")
    p.add_argument("--response", required=True, help="response column (the residual)")
    p.add_argument("--smooth", default="", help="comma-separated covariates for smooth terms")
    p.add_argument("--factor", default="", help="comma-separated factor covariates (at most 1)")
    p.add_argument("--distance", choices=["great-circle", "lonlat"], default="great-circle")
    p.add_argument("--structures", default=",".join(STRUCTURES),
                   help="comma-separated structures (default: %(default)s)")
    p.add_argument("--no-nugget", action="store_true", help="fit structures without nugget only")
    p.add_argument("--likelihood", choices=["auto", "exact", "vecchia"], default="auto",
                   help="exact (dense Cholesky), vecchia (nearest-neighbour approximation) "
                        "or auto: vecchia above --vecchia-above cells (default: %(default)s)")
    p.add_argument("--vecchia-above", type=int, default=15000,
                   help="cells above which --likelihood auto uses vecchia (default: %(default)s)")
    p.add_argument("--neighbors", type=int, default=30,
                   help="Vecchia conditioning set size (default: %(default)s)")
    p.add_argument("--residual-label", default="median", help="label for the effects table")
    p.add_argument("--output", type=Path, default=Path("drivers-output"))
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--cache", default=None,
                   help="directory or URL keeping finished fits: a rerun refits only what "
                        "changed (default: no cache)")


def read_table(path: Path, variables: list[str] | None = None) -> pd.DataFrame | object:
    """Read CSV/Parquet into a DataFrame, or open a Zarr store as an xarray Dataset."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zarr":
        import xarray as xr

        return xr.open_zarr(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns a process exit code."""
    from .api import fit_drivers
    from .fitcache import FitCache

    smooth, factor = _csv_list(args.smooth), _csv_list(args.factor)
    cache = FitCache(args.cache) if args.cache else None
    data = read_table(args.table)
    try:
        res = fit_drivers(data, args.response, smooth, factor, distance=args.distance,
                          structures=_csv_list(args.structures),
                          nuggets=(False,) if args.no_nugget else (False, True),
                          residual_label=args.residual_label, likelihood=args.likelihood,
                          vecchia_above=args.vecchia_above, neighbors=args.neighbors,
                          fit_cache=cache)
    except (KeyError, ValueError) as exc:
        print(f"rhcloud drivers: {exc}", file=sys.stderr)
        return 2
    paths = res.write(args.output)
    if not args.no_figures:
        from .figures import drivers_figures

        drivers_figures([res], Path(args.output) / "figures")
    best = res.best
    print(f"GLS ({res.likelihood} likelihood): best structure {best.structure}"
          f"{' + nugget' if best.nugget else ''} "
          f"(AIC {best.aic:.2f}, range {best.range:.4g}, nugget {best.nugget_value:.3g})")
    if res.gamm is not None:
        print(res.gamm_terms().to_string(index=False))
        print(res.gamm.decision)
    if cache is not None:
        print(f"{cache.hits} of {cache.hits + cache.fitted} fits read from {cache.url}")
    for p in paths.values():
        print(f"wrote {p}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m rhcloud.drivers.cli``)."""
    p = argparse.ArgumentParser(prog="rhcloud drivers", description=__doc__)
    _arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
