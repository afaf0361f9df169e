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
from typing import TYPE_CHECKING

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
from rhcloud.storage.paths import staged_output, storage_options_for

if TYPE_CHECKING:
    from rhcloud.drivers.fitcache import FitCache


def run(config: Config, client=None, chunks: dict[str, int] | None = None,
        progress: Callable[[str], None] | None = None) -> RunResult:
    """Run every stage of ``config``; ``client`` reuses an existing Dask client (else the
    ``cluster:`` section starts one). ``progress`` receives a line per stage (the CLI prints
    them; a terminal also gets a bar for the climatologies). ``RunResult.results`` is the
    written results.zarr, opened lazily."""
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    with _timed(timings, "catalog"):
        selection = catalog.select_datasets(config)                            # 1. catalog
    say(f"catalog: {len(selection)} datasets selected")
    reference = regrid.reference_grid(config.reference_grid)
    with ExitStack() as stack:
        store = stack.enter_context(temporary_store(reference))
        with client_for(config.cluster, client) as dask_client:
            link = getattr(dask_client, "dashboard_link", None)
            say(f"cluster: {link}" if link else "cluster: ready")
            t0 = time.perf_counter()
            inputs = ingest.open_inputs(selection.datasets, config, chunks)     # 2. ingest
            collected = climatology.Collected()
            clims = climatology.iter_climatologies(                            # 3. climatology
                inputs, collected, dask_client, on_progress=progress, cache=_cache(config))
            conservation, regrid_s = regrid.regrid_stream(clims, reference, store)  # 4. regrid
            timings["climatology"] = time.perf_counter() - t0 - regrid_s
            if len(collected.datasets) < config.min_datasets:
                raise RhcloudError(
                    f"only {len(collected.datasets)} datasets remain (min_datasets="
                    f"{config.min_datasets}); excluded:\n" + outputs.excluded_table(
                        selection, collected, inputs.reads.excluded).to_string(index=False))
            say(f"climatology: {len(collected.datasets)} done "
                f"({collected.cached} from the cache), {len(collected.excluded)} excluded")
            with _timed(timings, "observations"):
                obs = regrid.observations_to_reference(inputs.reads, reference)
        # from here on, everything reads the field store: on this machine
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
            fitted = drivers.run_drivers(results, config.drivers, fits)        # 7. drivers
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
        with staged_output(config.output, config.write_storage_options) as out:
            with _timed(timings, "report"):
                report.build_report(out, results, result.tables,                # 8. report
                                    result.summary_notes(), fitted,
                                    config.evaluation.portrait_members)
            outputs.write_outputs(result, out)
    # the field store is gone: the results are the written ones
    result.results = outputs.open_results(config)
    say(f"outputs written to {config.output}")
    return result


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
