"""The run, stage by stage: catalog → ingest/climatology → outputs.

Stages further down the flow (regrid, ensemble, evaluate, drivers, report) hook in here as
they land; each takes the previous stage's result and never reaches back up.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import xarray as xr

from rhcloud import __version__, catalog, grids, onegrid
from rhcloud.cluster import client_for
from rhcloud.collect import Collected, collect_climatologies
from rhcloud.config import Config
from rhcloud.stack import stack_fields


@dataclass
class RunResult:
    config: Config
    selection: pd.DataFrame
    collected: Collected
    excluded: pd.DataFrame
    totals: pd.DataFrame
    conservation: pd.DataFrame
    results: xr.Dataset
    timings: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = ["selected datasets:", catalog.format_selection(self.selection), "",
                 f"selected {len(self.selection)} datasets; "
                 f"{len(self.collected.climatologies)} used, {len(self.excluded)} excluded", ""]
        if not self.totals.empty:
            lines.append("global land totals (Pg C yr-1, "
                         f"{self.config.period[0]}-{self.config.period[1]}):")
            lines.append(self.totals.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        if not self.conservation.empty:
            worst = self.conservation["rel_error"].abs().max()
            lines.append(f"\nregridded to {self.config.reference_grid}: largest relative "
                         f"change of a land total {worst:.1e}")
        if not self.excluded.empty:
            lines += ["", "excluded:"]
            lines += [f"  {r.zstore}: {r.reason}" for r in self.excluded.itertuples()]
        lines += ["", f"outputs in {self.config.output}"]
        return "\n".join(lines)


def totals_table(collected: Collected) -> pd.DataFrame:
    """One row per dataset: kind, name, member_id, variable, total (Pg C yr-1)."""
    rows = [{"kind": "model", "name": c.attrs["source_id"], "member_id": c.attrs["member_id"],
             "variable_id": c.attrs["variable_id"], "total_PgC_yr": c.attrs["land_total_PgC_yr"]}
            for c in collected.climatologies]
    cols = ["kind", "name", "member_id", "variable_id", "total_PgC_yr"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["variable_id", "name", "member_id"]).reset_index(drop=True)


def excluded_table(selection_missing: list[tuple[str, str]], collected: Collected) -> pd.DataFrame:
    """Datasets excluded by a stage, and requested models the catalog lacked."""
    rows = collected.excluded + [{"zstore": f"{m} (no dataset)", "reason": why}
                                 for m, why in selection_missing]
    return pd.DataFrame(rows, columns=["zstore", "reason"])


def write_outputs(result: RunResult) -> None:
    out = Path(result.config.output)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    result.totals.to_csv(out / "tables" / "global_totals.csv", index=False)
    result.excluded.to_csv(out / "tables" / "excluded.csv", index=False)
    result.conservation.to_csv(out / "tables" / "regrid_conservation.csv", index=False)
    result.results.to_zarr(out / "results.zarr", mode="w", consolidated=True)
    provenance = {
        "rhcloud_version": __version__,
        "config": result.config.to_dict(),
        "datasets": [dict(c.attrs) for c in result.collected.climatologies],
        "timings_s": result.timings,
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str))


def run_pipeline(config: Config, client=None, chunks: dict[str, int] | None = None) -> RunResult:
    """Run every stage of ``config``; ``client`` reuses an existing Dask client."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    cat = catalog.open_catalog(config.catalog, config.storage_options)
    selection, _ = catalog.select(cat.df, config)
    missing = catalog.missing_models(selection, config)
    timings["catalog"] = time.perf_counter() - t0
    with client_for(config.cluster, client) as dask_client:
        t0 = time.perf_counter()
        collected = collect_climatologies(selection, config, dask_client, chunks)
        timings["climatology"] = time.perf_counter() - t0
    if len(collected.climatologies) < config.min_datasets:
        excluded = excluded_table(missing, collected)
        raise RuntimeError(f"only {len(collected.climatologies)} datasets remain "
                           f"(min_datasets={config.min_datasets}); excluded:\n"
                           + excluded.to_string(index=False))
    t0 = time.perf_counter()
    reference = grids.reference_grid(config.reference_grid)
    fields, conservation = onegrid.regrid_all(collected.climatologies, reference)
    results = xr.merge([stack_fields(fields, v) for v in config.variables]
                       + [reference[["lat_bnds", "lon_bnds"]]], compat="override")
    results["cell_area"] = grids.cell_area(reference)
    results.attrs = {"reference_grid": config.reference_grid,
                     "period": f"{config.period[0]}-{config.period[1]}",
                     "rhcloud_version": __version__}
    timings["regrid"] = time.perf_counter() - t0
    result = RunResult(config, selection, collected, excluded_table(missing, collected),
                       totals_table(collected), conservation, results, timings)
    write_outputs(result)
    return result
