"""The run, stage by stage: catalog → climatologies (cached) → regrid → evaluation →
drivers → report and outputs. Each stage takes the previous stage's result and never
reaches back up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import xarray as xr

from rhcloud import __version__, catalog, grids, onegrid, report
from rhcloud.cache import ClimatologyCache
from rhcloud.cluster import client_for
from rhcloud.collect import Collected, iter_climatologies
from rhcloud.config import Config
from rhcloud.drivers_stage import drivers_figures, drivers_tables, run_drivers, write_summary
from rhcloud.evaluation_stage import evaluate_run, gather_reads, start_reads
from rhcloud.fieldstore import FieldStore, local_scheduler, temporary_store
from rhcloud.ingest import storage_options_for
from rhcloud.outputs import redact, staged_output
from rhcloud.sites import site_metrics
from rhcloud.stack import align_stacks, stack_fields

if TYPE_CHECKING:
    from rhcloud.drivers.fitcache import FitCache


@dataclass
class RunResult:
    config: Config
    selection: pd.DataFrame
    collected: Collected
    tables: dict[str, pd.DataFrame]
    results: xr.Dataset
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def excluded(self) -> pd.DataFrame:
        return self.tables["excluded"]

    def summary_notes(self) -> list[str]:
        n_models = len({d["source_id"] for d in self.collected.datasets})
        return [f"{len(self.collected.datasets)} datasets used from {n_models} models, "
                f"{len(self.excluded)} excluded; period {self.config.period[0]}–"
                f"{self.config.period[1]}; reference grid {self.config.reference_grid}",
                *([f"{self.collected.cached} climatologies read from the cache "
                   f"({self.config.cache_url}), the others computed"]
                  if self.collected.cached else []),
                *self.skipped]

    def __str__(self) -> str:
        t = self.tables
        lines = ["selected datasets:", catalog.format_selection(self.selection), "",
                 *self.summary_notes(), ""]
        totals = t["global_totals"]
        if not totals.empty:
            lines.append("global land totals (Pg C yr-1):")
            lines.append(totals.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        metrics = t["model_metrics"]
        if not metrics.empty:
            lines += ["", "Table 1 (member means; all members in tables/model_metrics.csv):"]
            ens = metrics[metrics["member_id"] == "ensemble"][METRIC_COLUMNS]
            lines.append(ens.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
        if "gamm_terms" in t:
            lines += ["", "drivers of the ESM residual (GAMM terms; tables/gamm_terms.csv):"]
            lines.append(t["gamm_terms"].to_string(index=False,
                                                   float_format=lambda x: f"{x:.3g}"))
        cons = t["regrid_conservation"]
        if not cons.empty:
            lines.append(f"\nregridded to {self.config.reference_grid}: largest relative "
                         f"change of a land total {cons['rel_error'].abs().max():.1e}")
        if not self.excluded.empty:
            lines += ["", "excluded:"]
            lines += [f"  {r.zstore}: {r.reason}" for r in self.excluded.itertuples()]
        lines += ["", f"report: {str(self.config.output).rstrip('/')}/report.html"]
        return "\n".join(lines)


def totals_table(collected: Collected) -> pd.DataFrame:
    """One row per dataset: kind, name, member_id, variable, total (Pg C yr-1)."""
    rows = [{"kind": "model", "name": d["source_id"], "member_id": d["member_id"],
             "variable_id": d["variable_id"], "total_PgC_yr": d["land_total_PgC_yr"]}
            for d in collected.datasets]
    # the contract's columns first; variable_id added after them (rh and npp totals)
    cols = ["kind", "name", "member_id", "total_PgC_yr", "variable_id"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["variable_id", "name", "member_id"]).reset_index(drop=True)


def excluded_table(selection: pd.DataFrame, selection_missing: list[tuple[str, str]],
                   collected: Collected, extra: list[dict[str, str]]) -> pd.DataFrame:
    """Datasets excluded by a stage, requested models the catalog lacked, and models whose
    every member failed."""
    rows = list(collected.excluded) + list(extra)
    rows += [{"zstore": f"{m} (no dataset)", "reason": why} for m, why in selection_missing]
    ok = {(d["source_id"], d["variable_id"]) for d in collected.datasets}
    for (model, var), _ in selection.groupby(["source_id", "variable_id"]):
        if (model, var) not in ok:
            rows.append({"zstore": f"{model} {var} (every member)",
                         "reason": "every selected member failed; see the rows above"})
    return pd.DataFrame(rows, columns=["zstore", "reason"])


METRIC_COLUMNS = ["source_id", "member_id", "n_within_mad", "rmse", "r2", "total_PgC_yr"]


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("rhcloud", "numpy", "xarray", "dask", "distributed", "zarr", "intake-esm",
                "gcsfs", "fsspec", "scipy", "statsmodels", "pygam", "xarray-regrid",
                "rioxarray", "cftime"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_outputs(result: RunResult, out: Path) -> None:
    """Tables, results.zarr and provenance.json under the local directory ``out``."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for name, table in result.tables.items():
        table.to_csv(out / "tables" / f"{name}.csv", index=False)
    result.results.to_zarr(out / "results.zarr", mode="w", consolidated=True, zarr_format=2)
    provenance = {
        "rhcloud_version": __version__,
        "packages": package_versions(),
        "config": redact(result.config.to_dict()),
        "catalog_rows": result.selection.astype(str).to_dict(orient="records"),
        "datasets": result.collected.datasets,
        "skipped": result.skipped,
        "timings_s": result.timings,
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str))


def reference_fields(fields: list[xr.Dataset], config: Config,
                     reference: xr.Dataset) -> xr.Dataset:
    """The regridded climatologies of every variable stacked along ``dataset`` (aligned by
    model and member; rhcloud.stack), with the reference grid's bounds and cell areas."""
    stacked = align_stacks([stack_fields(fields, v) for v in config.variables])
    results = xr.merge([stacked, reference[["lat_bnds", "lon_bnds"]]], compat="override")
    results["cell_area"] = grids.cell_area(reference)
    results.attrs = {"reference_grid": config.reference_grid,
                     "period": f"{config.period[0]}-{config.period[1]}",
                     "rhcloud_version": __version__}
    return results


def _ordered_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    if metrics.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    rest = [c for c in metrics.columns if c not in METRIC_COLUMNS]
    return metrics[METRIC_COLUMNS + rest]


def drivers_sections(drivers, figdir: Path) -> list[tuple[str, str]]:
    """Report sections of the drivers stage: AIC table, GAMM terms, the factor decision and
    the partial-effect figures."""
    if not drivers.results:
        return []
    figs = drivers_figures(drivers, figdir)
    body = report.figure_section(figs)
    for r in drivers.results:
        note = f"{r.residual_label} residual, n = {r.best.n}: lowest AIC {r.best.structure}"
        if r.gamm is not None:
            note += f"; {r.gamm.decision}"
        body += report.table_section(r.gamm_terms(), note)
    return [("Drivers of the residual (GLS, GAMM)", body)]


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


def regrid_stream(clims: Iterable[xr.Dataset], reference: xr.Dataset,
                  store: FieldStore) -> tuple[pd.DataFrame, float]:
    """Each climatology onto the reference grid as it comes, into ``store`` (nothing else is
    kept); the conservation table and the seconds spent regridding."""
    rows, spent = [], 0.0
    for clim in clims:
        t0 = time.perf_counter()
        field, row = onegrid.to_reference(clim, reference)
        store.add(field)
        rows.append(row)
        spent += time.perf_counter() - t0
    return onegrid.conservation_frame(rows), spent


def open_results(config: Config) -> xr.Dataset:
    """A finished run's results.zarr, lazily, from its output (local or object storage)."""
    url = f"{str(config.output).rstrip('/')}/results.zarr"
    return xr.open_zarr(url, consolidated=True,
                        storage_options=storage_options_for(url, config.write_storage_options))


def run_pipeline(config: Config, client=None, chunks: dict[str, int] | None = None,
                 progress: Callable[[str], None] | None = None) -> RunResult:
    """Run every stage of ``config``; ``client`` reuses an existing Dask client.
    ``progress`` receives a line per stage (the CLI prints them; a terminal also gets a bar
    for the climatologies and the dashboard link of a distributed cluster).

    The cluster reads the stores and the observation files. Each finished climatology is
    regridded here and appended to a field store on local disk, so this process holds one
    climatology at a time whatever the number of members; the statistics across datasets
    then read that store block by block, on this machine (``fieldstore.local_scheduler``).
    ``RunResult.results`` is the written results.zarr, opened lazily."""
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    cat = catalog.open_catalog(config.catalog, config.storage_options)
    selection, _ = catalog.select(cat.df, config)
    missing = catalog.missing_models(selection, config)
    timings["catalog"] = time.perf_counter() - t0
    say(f"catalog: {len(selection)} datasets selected")
    reference = grids.reference_grid(config.reference_grid)
    with ExitStack() as stack:
        store = stack.enter_context(temporary_store(reference))
        # the cluster serves every stage that reads data, and the drivers' fits (it stays
        # up until the run ends)
        dask_client = stack.enter_context(client_for(config.cluster, client))
        link = getattr(dask_client, "dashboard_link", None)
        say(f"cluster: {link}" if link else "cluster: ready")
        t0 = time.perf_counter()
        # the product and covariate files are read on the cluster while it computes the
        # climatologies (they are independent): the evaluation then only gathers them
        reads = start_reads(config)
        collected = Collected()
        conservation, regrid_s = regrid_stream(
            iter_climatologies(selection, config, collected, dask_client, chunks,
                               on_progress=progress, cache=_cache(config)),
            reference, store)
        timings["climatology"] = time.perf_counter() - t0 - regrid_s
        if len(collected.datasets) < config.min_datasets:
            excluded = excluded_table(selection, missing, collected, [])
            raise RuntimeError(f"only {len(collected.datasets)} datasets remain "
                               f"(min_datasets={config.min_datasets}); excluded:\n"
                               + excluded.to_string(index=False))
        say(f"climatology: {len(collected.datasets)} done "
            f"({collected.cached} from the cache), {len(collected.excluded)} excluded")
        t0 = time.perf_counter()
        obs = gather_reads(reads, reference)
        timings["evaluate"] = time.perf_counter() - t0
        # from here on, everything reads the field store: on this machine
        stack.enter_context(local_scheduler())
        t0 = time.perf_counter()
        results = reference_fields(store.fields(), config, reference)
        timings["regrid"] = regrid_s + time.perf_counter() - t0
        say(f"regrid: on {config.reference_grid}, largest relative change of a land total "
            f"{conservation['rel_error'].abs().max():.1e}")
        t0 = time.perf_counter()
        totals = totals_table(collected)
        ev = evaluate_run(config, results, totals, reference, obs)
        results = results.merge(ev.fields, compat="override")
        tables = {
            "global_totals": pd.concat([totals, ev.totals], ignore_index=True),
            "model_metrics": _ordered_metrics(ev.metrics),
            "regrid_conservation": pd.concat([conservation, ev.conservation],
                                             ignore_index=True),
            "excluded": excluded_table(selection, missing, collected, ev.excluded),
            "site_metrics": site_metrics(results),
        }
        timings["evaluate"] += time.perf_counter() - t0
        say("evaluation: products, Table 1, residuals and SRDB sites done")
        t0 = time.perf_counter()
        fits = _fit_cache(config)
        drivers = run_drivers(results, config.drivers, fits, client=dask_client)
        tables.update(drivers_tables(drivers))
        if drivers.excluded:
            tables["excluded"] = pd.concat([tables["excluded"],
                                            pd.DataFrame(drivers.excluded)], ignore_index=True)
        timings["drivers"] = time.perf_counter() - t0
        if drivers.results:
            say("drivers: " + "; ".join(
                f"{r.residual_label} residual: best GLS {r.best.structure}"
                f"{' + nugget' if r.best.nugget else ''}" for r in drivers.results)
                + (f" ({fits.hits} of {fits.hits + fits.fitted} fits from the cache)"
                   if fits is not None and fits.hits else ""))
            if fits is not None and fits.failures:
                say(f"{len(fits.failures)} drivers fits could not be cached "
                    f"(first: {fits.failures[0]})")
        result = RunResult(config, selection, collected, tables, results,
                           ev.skipped + drivers.skipped, timings)
        with staged_output(config.output, config.write_storage_options) as out:
            t0 = time.perf_counter()
            sections = drivers_sections(drivers, out / "figures")
            report.build_report(out, results, tables, result.summary_notes(), sections)
            timings["report"] = time.perf_counter() - t0
            write_outputs(result, out)
            if drivers.results:  # per-fit seconds, evaluations and workers
                write_summary(drivers.results, out)
    # the field store is gone: the results are the written ones
    result.results = open_results(config)
    say(f"outputs written to {config.output}")
    return result
