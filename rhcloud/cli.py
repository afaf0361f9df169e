"""The ``rhcloud`` command line: ``world``, ``catalog``, ``demo``, ``run``, ``drivers``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rhcloud import interrupts
from rhcloud.config import ConfigError, load_config
from rhcloud.storage.paths import redact_text
from rhcloud.storage.sessions import close_http_sessions

DEMO_WORLD = Path("demo-world")
DEMO_OUTPUT = Path("demo-output")
DEMO_DRIVERS_GRID = "BCC-ESM1"


def _add_world(sub) -> None:
    p = sub.add_parser("world", help="generate the virtual CMIP6 world")
    p.add_argument("--root", type=Path, default=DEMO_WORLD, help="directory (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--years", type=int, nargs=2, metavar=("FIRST", "LAST"), default=(1987, 2014))
    p.add_argument("--truth-period", type=int, nargs=2, metavar=("FIRST", "LAST"),
                   default=(1990, 2010), help="period whose totals truth.json holds")
    p.add_argument("--members", type=int, default=None,
                   help="members per model (default: each model's own list)")
    p.add_argument("--models", default=None, help="comma-separated source_ids (default: 13)")
    p.add_argument("--force", action="store_true", help="regenerate even if it exists")


def _world_params(args):
    from rhcloud.world import WorldParams
    from rhcloud.world.spec import PAPER_MODELS

    models = tuple(args.models.split(",")) if args.models else PAPER_MODELS
    return WorldParams(seed=args.seed, years=tuple(args.years), models=models,
                       n_members=args.members, truth_period=tuple(args.truth_period))


def cmd_world(args) -> int:
    from rhcloud.world import generate_world

    root = generate_world(args.root, _world_params(args), force=args.force)
    print(f"virtual CMIP6 world in {root}: catalogs {root / 'pangeo-cmip6.json'} (gs://cmip6) "
          f"and {root / 'local-cmip6.json'} (file://); truth in {root / 'truth.json'}")
    return 0


def cmd_catalog(args) -> int:
    from rhcloud.stages import catalog

    config = load_config(args.config)
    chosen = catalog.select_datasets(config)
    selection = chosen.datasets
    print(catalog.format_selection(selection))
    print(f"\n{len(selection)} datasets from {selection['source_id'].nunique()} models "
          f"(members: {config.members!r})")
    for model, why in chosen.missing:
        print(f"missing: {model}: {why}")
    for _, row in chosen.superseded.iterrows():
        print(f"superseded (older version ignored): {row['zstore']}")
    for e in chosen.excluded:
        print(f"excluded: {e.zstore}: {e.reason}")
    return 0


def _run(config, output: str | None, fresh: bool = False) -> int:
    from rhcloud.pipeline import run

    if output is not None:
        config.output = str(output)
    if fresh:
        config.resume = False
    summary = run(config, progress=lambda msg: print(f"[rhcloud] {redact_text(msg)}",
                                                      flush=True))
    print(redact_text(str(summary)))
    return 0


def cmd_run(args) -> int:
    return _run(load_config(args.config), args.output, args.fresh)


def cmd_demo(args) -> int:
    from rhcloud.world import WorldParams, generate_world

    root = generate_world(args.world, WorldParams())
    config = load_config(root / "run.yaml")
    # the demo fits the drivers on a T42 grid (~2,500 land cells) to stay within minutes on
    # 2 cores; a real run fits the whole residual field on the reference grid
    if config.drivers.grid is None:
        config.drivers.grid = DEMO_DRIVERS_GRID
    return _run(config, args.output, args.fresh)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rhcloud", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_world(sub)
    p = sub.add_parser("catalog", help="print the datasets a config selects (reads no data)")
    p.add_argument("config", type=Path)
    p = sub.add_parser("run", help="run the evaluation described by a config")
    p.add_argument("config", type=Path)
    p.add_argument("--output", default=None, help="directory or object-store URL")
    _add_resume(p)
    from rhcloud.drivers.cli import add_parser as add_drivers_parser

    add_drivers_parser(sub)
    p = sub.add_parser("demo", help="generate the demo world (once) and run on it")
    p.add_argument("--world", type=Path, default=DEMO_WORLD)
    p.add_argument("--output", default=str(DEMO_OUTPUT), help="directory or object-store URL")
    _add_resume(p)
    return parser


def _add_resume(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", dest="fresh", action="store_false", default=False,
                   help="reuse climatologies cached by earlier runs (the default)")
    g.add_argument("--fresh", dest="fresh", action="store_true",
                   help="recompute every climatology (and overwrite the cache)")


def cmd_drivers(args) -> int:
    from rhcloud.drivers.cli import run

    return run(args)


COMMANDS = {"world": cmd_world, "catalog": cmd_catalog, "run": cmd_run, "demo": cmd_demo,
            "drivers": cmd_drivers}


INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with interrupts.watching():
            code = COMMANDS[args.command](args)
            interrupts.checkpoint()  # a SIGINT a finalizer swallowed still ends the run
        return code
    except ConfigError as exc:
        print(f"rhcloud: configuration error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except ValueError as exc:  # RhcloudError and grid errors carry their own explanation
        print(f"rhcloud: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rhcloud: interrupted; the climatologies finished so far are in the cache, "
              "and a rerun resumes from them", file=sys.stderr)
        return INTERRUPTED


def entry() -> None:
    """The console script: :func:`main`, then exit at once after an interrupt: threads
    still waiting on a store (an opening, a stalled request) must not hold the process
    (the interpreter would join them at exit)."""
    code = main()
    if code == INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    close_http_sessions()  # before gcsfs's exit-time finalizers, which would fail on them
    sys.exit(code)


if __name__ == "__main__":
    entry()
