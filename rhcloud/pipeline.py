"""The run: the eight stages of ``rhcloud.stages`` in flow order, with timings and progress.

    catalog → ingest → climatology → regrid → ensemble → evaluate → drivers → report

Each stage takes what the earlier ones produced and never reaches back up. The cluster reads
the stores and the observation files (ingest, climatology); each finished climatology is
regridded here and appended to a field store on local disk, so this process holds one
climatology at a time whatever the number of members; the stages after regrid read that
store block by block, on this machine (``rhcloud.storage.fieldstore.local_scheduler``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rhcloud import interrupts
from rhcloud.cluster import client_for
from rhcloud.config import Config
from rhcloud.errors import RhcloudError
from rhcloud.stages import (
    catalog,
    climatology,
    drivers,
    ensemble,
    evaluate,
    ingest,
    outputs,
    regrid,
    report,
)
from rhcloud.stages.outputs import RunResult
from rhcloud.storage.climcache import ClimatologyCache
from rhcloud.storage.fieldstore import local_scheduler, temporary_store
from rhcloud.storage.paths import (
    claim_output,
    is_remote,
    redact_text,
    staged_output,
    storage_options_for,
)

if TYPE_CHECKING:
    from rhcloud.drivers.fitcache import FitCache


def run(config: Config, client=None, chunks: dict[str, int] | None = None,
        progress: Callable[[str], None] | None = None) -> RunResult:
    """Run every stage of ``config``; ``client`` reuses an existing Dask client (else the
    ``cluster:`` section starts one). ``progress`` receives a line per stage (the CLI prints
    them; a terminal also gets a bar for the climatologies). ``RunResult.results`` is the
    written results.zarr, opened lazily."""
    tell = progress or (lambda _msg: None)

    def say(msg: str) -> None:
        interrupts.checkpoint()  # each stage's end: a swallowed Ctrl-C ends the run here
        tell(msg)

    timings: dict[str, float] = {}
    keep = kept_in_output(config)
    claim_output(config.output, config.write_storage_options, keep)  # before any work
    with _timed(timings, "catalog"):
        selection = catalog.select_datasets(config)                            # 1. catalog
    say(f"catalog: {len(selection)} datasets selected")
    reference = regrid.reference_grid(config.reference_grid)
    with ExitStack() as stack:
        store = stack.enter_context(temporary_store(reference))
        # the cluster serves every stage that reads data, and the drivers' fits (it stays up
        # until the run ends)
        dask_client = stack.enter_context(client_for(config.cluster, client))
        link = getattr(dask_client, "dashboard_link", None)
        say(f"cluster: {link}" if link else "cluster: ready")
        t0 = time.perf_counter()
        inputs = ingest.open_inputs(selection.datasets, config, chunks)         # 2. ingest
        # catalog rows that could not be used are the run's first exclusions
        collected = climatology.Collected(excluded=list(selection.excluded))
        clims = climatology.iter_climatologies(                                # 3. climatology
            inputs, collected, dask_client, on_progress=progress, cache=_cache(config))
        conservation, regrid_s = regrid.regrid_stream(clims, reference, store)  # 4. regrid
        timings["climatology"] = time.perf_counter() - t0 - regrid_s
        if len(collected.datasets) < config.min_datasets:
            _too_few(config, selection, collected, inputs.reads.excluded, keep)
        say(f"climatology: {len(collected.datasets)} done "
            f"({collected.cached} from the cache), "
            f"{outputs.n_excluded_datasets(collected)} excluded")
        with _timed(timings, "observations"):
            obs = regrid.observations_to_reference(inputs.reads, reference)
        # from here on, the statistics read the field store: on this machine (the drivers'
        # fits, which travel as data, go to the cluster)
        stack.enter_context(local_scheduler())
        with _timed(timings, "ensemble"):
            results = ensemble.build(                                          # 5. ensemble
                ensemble.reference_fields(store.fields(), config, reference), obs)
        timings["regrid"] = regrid_s
        say(f"regrid: on {config.reference_grid}, largest relative change of a land total "
            f"{conservation['rel_error'].abs().max():.1e}")
        with _timed(timings, "evaluate"):
            ev = evaluate.evaluate(config, results, collected, obs)            # 6. evaluate
            results = results.merge(ev.fields, compat="override")
        say("evaluation: products, Table 1, residuals, SRDB sites, regions, responses and "
            "scores done")
        fits = _fit_cache(config)
        with _timed(timings, "drivers"):
            fitted = drivers.run_drivers(results, config.drivers, fits,        # 7. drivers
                                         client=dask_client)
        _say_drivers(say, fitted, fits)
        tables = {**ev.tables,
                  "regrid_conservation": regrid.with_observations(conservation, obs),
                  "excluded": outputs.excluded_table(selection, collected, obs.excluded,
                                                     fitted.excluded),
                  **drivers.drivers_tables(fitted)}
        result = RunResult(config, selection.datasets, collected,
                           {k: tables[k] for k in TABLE_ORDER if k in tables}, results,
                           ev.skipped + fitted.skipped, timings,
                           [*collected.excluded, *obs.excluded, *fitted.excluded])
        say(f"writing outputs to {redact_text(str(config.output))}")
        with staged_output(config.output, config.write_storage_options, keep) as out:
            with _timed(timings, "report"):
                report.build_report(out, results, result.tables,                # 8. report
                                    result.summary_notes(), fitted,
                                    config.evaluation.portrait_members)
            outputs.write_outputs(result, out)
            if fitted.results:  # per-fit seconds, evaluations and workers
                drivers.write_summary(fitted.results, out)
            interrupts.checkpoint()  # before a remote output is uploaded
    # the field store is gone: the results are the written ones
    result.results = outputs.open_results(config)
    say(f"outputs written to {redact_text(str(config.output))}")
    return result


def kept_in_output(config: Config) -> tuple[str, ...]:
    """What a run keeps of its output directory when it takes it: the cache (``cache/``,
    or the top-level entry ``cache:`` names inside the output); everything else there is
    an earlier run's and is replaced (docs/outputs.md)."""
    keep = ["cache"]
    url, out = config.cache_url, str(config.output).rstrip("/")
    if url is None:
        return tuple(keep)
    if not is_remote(out) and not is_remote(url):
        cache = Path(url.removeprefix("file://")).absolute()
        root = Path(out.removeprefix("file://")).absolute()
        if cache != root and root in cache.parents:
            keep.append(cache.relative_to(root).parts[0])
    elif url.startswith(out + "/"):
        keep.append(url[len(out) + 1:].split("/", 1)[0])
    return tuple(dict.fromkeys(keep))


def _too_few(config: Config, selection: catalog.Selection, collected: climatology.Collected,
             files: list, keep: tuple[str, ...]) -> None:
    """Fewer than ``min_datasets`` datasets remain: write ``tables/excluded.csv`` and a short
    ``report.html`` saying why, then stop with a RhcloudError naming them."""
    excluded = outputs.excluded_table(selection, collected, files)
    why = (f"only {len(collected.datasets)} of {len(selection)} selected datasets remain "
           f"(min_datasets={config.min_datasets}): "
           f"{outputs.n_excluded_datasets(collected)} excluded")
    with staged_output(config.output, config.write_storage_options, keep) as out:
        (out / "tables").mkdir(parents=True, exist_ok=True)
        excluded.to_csv(out / "tables" / "excluded.csv", index=False)
        report.write_html(out / "report.html", "rhcloud: run stopped", [
            ("Why the run stopped", report.notes_section(
                [why, "no results were computed from the remaining datasets; "
                      "tables/excluded.csv lists every exclusion and its reason"])),
            ("Excluded datasets", report.table_section(excluded))])
    lines = [f"  {r.zstore}: {r.reason}" for r in excluded.itertuples()]
    shown = lines[:20] + ([f"  … and {len(lines) - 20} more"] if len(lines) > 20 else [])
    raise RhcloudError(f"{why}; written: {redact_text(str(config.output).rstrip('/'))}/"
                       "tables/excluded.csv and report.html\n" + "\n".join(shown))


TABLE_ORDER = ("global_totals", "model_metrics", "regrid_conservation", "excluded",
               "site_metrics", "regional_totals", "regional_metrics", "responses", "scores",
               "gls_aic", "gamm_terms", "gamm_effects")


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
    interrupts.checkpoint()  # the stage's end (the next stage's start needs no other)


def _say_drivers(say, fitted: drivers.DriversOutcome, fits: FitCache | None) -> None:
    if not fitted.results:
        return
    say("drivers: " + "; ".join(
        f"{r.residual_label} residual: best GLS {r.best.structure}"
        f"{' + nugget' if r.best.nugget else ''}" for r in fitted.results)
        + (f" ({fits.hits} of {fits.hits + fits.fitted} fits from the cache)"
           if fits is not None and fits.hits else ""))
    if fits is not None and fits.failures:
        say(f"{len(fits.failures)} drivers fits could not be cached "
            f"(first: {fits.failures[0]})")


def _cache(config: Config) -> ClimatologyCache | None:
    url = config.cache_url
    if url is None:
        return None
    return ClimatologyCache(url, storage_options_for(url, config.write_storage_options),
                            read_storage_options=config.storage_options,
                            fresh=not config.resume)


def _fit_cache(config: Config) -> FitCache | None:
    """The drivers' fits, kept beside the climatologies (``<cache>/fits``); None without a
    cache."""
    from rhcloud.drivers.fitcache import FitCache  # the drivers' imports only when needed

    url = config.cache_url
    if url is None:
        return None
    url = f"{url.rstrip('/')}/fits"
    return FitCache(url, storage_options_for(url, config.write_storage_options),
                    fresh=not config.resume)
