"""Outputs stage: what a run hands back (:class:`RunResult`) and writes under its output
(``docs/outputs.md``): ``tables/*.csv``, ``results.zarr`` and ``provenance.json``, beside the
report's ``figures/`` and ``report.html``. Local directories and object-store URLs alike
(``rhcloud.storage.paths.staged_output``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import xarray as xr

from rhcloud._version import __version__
from rhcloud.config import Config
from rhcloud.errors import Exclusion
from rhcloud.stages.catalog import Selection, format_selection
from rhcloud.stages.climatology import Collected
from rhcloud.stages.evaluate import METRIC_COLUMNS
from rhcloud.storage.paths import redact, redact_text, storage_options_for

PACKAGES = ("rhcloud", "numpy", "xarray", "dask", "distributed", "zarr", "intake-esm",
            "gcsfs", "fsspec", "scipy", "statsmodels", "pygam", "xarray-regrid", "rioxarray",
            "cftime", "regionmask")


@dataclass
class RunResult:
    """A finished run: its configuration, the catalog selection, what the climatology stage
    used, every table (by name, as written under ``tables/``) and ``results`` (the written
    results.zarr, opened lazily)."""

    config: Config
    selection: pd.DataFrame
    collected: Collected
    tables: dict[str, pd.DataFrame]
    results: xr.Dataset
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    exclusions: list[Exclusion] = field(default_factory=list)

    @property
    def excluded(self) -> pd.DataFrame:
        return self.tables["excluded"]

    def summary_notes(self) -> list[str]:
        n_models = len({d["source_id"] for d in self.collected.datasets})
        files = {e.zstore for e in self.exclusions} - {e.zstore for e in
                                                       self.collected.excluded}
        return [f"{len(self.collected.datasets)} datasets used from {n_models} models, "
                f"{n_excluded_datasets(self.collected)} excluded"
                + (f" (and {len(files)} other inputs)" if files else "")
                + f"; period {self.config.period[0]}–{self.config.period[1]}; reference "
                  f"grid {self.config.reference_grid}",
                *([f"{self.collected.cached} climatologies read from the cache "
                   f"({redact_text(str(self.config.cache_url))}), the others computed"]
                  if self.collected.cached else []),
                *self.skipped]

    def __str__(self) -> str:
        t = self.tables
        lines = ["selected datasets:", format_selection(self.selection), "",
                 *self.summary_notes(), ""]
        totals = t["global_totals"]
        if not totals.empty:
            lines.append("global land totals (Pg C yr-1):")
            lines.append(totals.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        metrics = t["model_metrics"]
        if not metrics.empty:
            lines += ["", "Table 1 (member means; all members in tables/model_metrics.csv):"]
            ens = metrics[metrics["member_id"] == "ensemble"][METRIC_COLUMNS].copy()
            for count in ("n_cells", "n_within_mad"):  # counts of cells: 7458, not 7.46e+03
                ens[count] = ens[count].round().astype("Int64")
            lines.append(ens.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
        scores = t.get("scores", pd.DataFrame())
        if not scores.empty:
            lines += ["", "overall score ranking (member means; 0..1, 1 best; "
                      "tables/scores.csv):"]
            lines.append(score_ranking(scores).to_string(index=False,
                                                         float_format=lambda x: f"{x:.3f}"))
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
        lines += ["", f"report: {redact_text(str(self.config.output).rstrip('/'))}/report.html"]
        return "\n".join(lines)


def n_excluded_datasets(collected: Collected) -> int:
    """How many datasets were excluded: each once, whatever the number of rows about it
    (``tables/excluded.csv`` adds a row per model whose every member failed)."""
    return len({e.zstore for e in collected.excluded})


def score_ranking(scores: pd.DataFrame) -> pd.DataFrame:
    """The models' 'ensemble' rows of ``scores`` by rank: rank, source_id and the scores."""
    ens = scores[scores["member_id"] == "ensemble"].sort_values("rank")
    cols = ["rank", "source_id", "score_overall",
            *[c for c in ens.columns if c.startswith("score_") and c != "score_overall"]]
    return ens[cols].astype({"rank": "Int64"})


def excluded_table(selection: Selection, collected: Collected, files: list[Exclusion],
                   drivers: list[Exclusion] = ()) -> pd.DataFrame:
    """``tables/excluded.csv``: the datasets a stage excluded, the observation ``files``
    that failed, requested models the catalog lacked, models whose every member failed,
    then the drivers' fits that could not be made."""
    rows = [e.row() for e in (*collected.excluded, *files)]
    rows += [{"zstore": f"{m} (no dataset)", "reason": why} for m, why in selection.missing]
    ok = {(d["source_id"], d["variable_id"]) for d in collected.datasets}
    for (model, var), _ in selection.datasets.groupby(["source_id", "variable_id"]):
        if (model, var) not in ok:
            rows.append({"zstore": f"{model} {var} (every member)",
                         "reason": "every selected member failed; see the rows above"})
    rows += [e.row() for e in drivers]
    # reasons quote exceptions, which may quote URLs: nothing credential-like is written
    return pd.DataFrame(redact(rows), columns=["zstore", "reason"])


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in PACKAGES:
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
        "products": _product_rows(result.tables.get("global_totals")),
        "excluded": [e.to_dict() for e in result.exclusions],
        "skipped": result.skipped,
        "timings_s": result.timings,
    }
    # the config's storage options by key, and every string by its form (URL userinfo …)
    provenance = redact(json.loads(json.dumps(provenance, default=str)))
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2))
    write_cmec(result, out)


def _product_rows(totals: pd.DataFrame | None) -> list[dict]:
    """Each product's total and the land fraction it was weighted with."""
    if totals is None or "kind" not in totals:
        return []
    rows = totals[totals["kind"] == "product"]
    return rows[[c for c in ("name", "total_PgC_yr", "landfrac_source") if c in rows]] \
        .to_dict(orient="records")


CMEC_METRICS = {
    "total_PgC_yr": ("land total of Rh", "Pg C yr-1", "regional_metrics"),
    "n_within_mad": ("land cells within product median ± MAD (fractional per region)",
                     "cells", "regional_metrics"),
    "rmse": ("RMSE against the product median", "g C m-2 yr-1", "regional_metrics"),
    "r2": ("squared Pearson correlation with the product median", "1", "regional_metrics"),
    "bias": ("mean of model − product median", "g C m-2 yr-1", "regional_metrics"),
}
"""Metrics of the CMEC bundle per region (from tables/regional_metrics.csv); the scores
(tables/scores.csv) are added for the region ``global``."""


def cmec_metrics(tables: dict[str, pd.DataFrame]) -> dict:
    """The CMEC metric JSON (DIMENSIONS and RESULTS over model × region × metric): models
    are each model's member mean (its source_id) and every member ("<source_id>
    <member_id>"); regions are those of tables/regional_metrics.csv; metrics its columns
    and the scores of tables/scores.csv (region global)."""
    reg = tables.get("regional_metrics", pd.DataFrame())
    scores = tables.get("scores", pd.DataFrame())
    results: dict = {}
    metrics = {k: {"long_name": v[0], "units": v[1], "table": f"tables/{v[2]}.csv"}
               for k, v in CMEC_METRICS.items()}

    def key(sid, mid):
        return str(sid) if mid == "ensemble" else f"{sid} {mid}"

    for row in reg.itertuples(index=False):
        cell = results.setdefault(key(row.source_id, row.member_id), {}).setdefault(
            str(row.region), {})
        for m in CMEC_METRICS:
            cell[m] = _json_number(getattr(row, m))
    score_cols = [c for c in scores.columns if c.startswith("score_")]
    for c in score_cols:
        metrics[c] = {"long_name": c.removeprefix("score_").replace("_", " ") + " score",
                      "units": "1", "table": "tables/scores.csv"}
    for row in scores.to_dict(orient="records"):
        cell = results.setdefault(key(row["source_id"], row["member_id"]), {}).setdefault(
            "global", {})
        cell.update({c: _json_number(row[c]) for c in score_cols})
    regions = {}
    if not reg.empty:
        for r, s in reg[["region", "region_set"]].drop_duplicates().itertuples(index=False):
            regions[str(r)] = {"region_set": str(s)}
    regions.setdefault("global", {"region_set": "global"})
    return {
        "SCHEMA": {"name": "CMEC", "version": "v1", "package": "rhcloud"},
        "DIMENSIONS": {"json_structure": ["model", "region", "metric"],
                       "model": {m: {} for m in results}, "region": regions,
                       "metric": metrics},
        "RESULTS": results,
        "PROVENANCE": {"rhcloud_version": __version__},
    }


def _json_number(v) -> float | None:
    """A float for JSON; NaN (undefined) as null."""
    v = float(v)
    return v if v == v else None


def cmec_output(out: Path) -> dict:
    """The CMEC output JSON naming the run's files under ``out`` (data, plots, html,
    metrics), paths relative to the bundle's parent (the run's output)."""
    def files(pattern: str, what: str) -> dict:
        return {p.stem: {"filename": str(p.relative_to(out)), "long_name":
                         p.stem.replace("_", " "), "description": what}
                for p in sorted(out.glob(pattern))}

    data = files("tables/*.csv", "table (docs/outputs.md)")
    data["results"] = {"filename": "results.zarr", "long_name": "gridded results",
                       "description": "every field on the reference grid (Zarr v2)"}
    data["provenance"] = {"filename": "provenance.json", "long_name": "provenance",
                          "description": "config, package versions, datasets, timings"}
    return {
        "index": "index",
        "provenance": {"environment": {"rhcloud": __version__}, "modeldata": "catalog rows "
                       "in provenance.json", "obsdata": "products in provenance.json",
                       "log": None},
        "data": data,
        "plots": files("figures/*.png", "figure of the report"),
        "html": {"index": {"filename": "report.html", "long_name": "rhcloud report",
                           "description": "every table and figure in one offline page"}},
        "metrics": {"rhcloud": {"filename": "cmec/metrics.json", "long_name":
                                "rhcloud metrics", "description": "CMEC metric JSON: model "
                                "× region × metric"}},
    }


def write_cmec(result: RunResult, out: Path) -> None:
    """``cmec/metrics.json`` and ``cmec/output.json`` under ``out`` (after every other file,
    so that output.json names them all)."""
    (out / "cmec").mkdir(parents=True, exist_ok=True)
    (out / "cmec" / "metrics.json").write_text(json.dumps(cmec_metrics(result.tables),
                                                          indent=1, allow_nan=False))
    (out / "cmec" / "output.json").write_text(json.dumps(cmec_output(out), indent=1))


def open_results(config: Config) -> xr.Dataset:
    """A finished run's results.zarr, lazily, from its output (local or object storage)."""
    url = f"{str(config.output).rstrip('/')}/results.zarr"
    return xr.open_zarr(url, consolidated=True,
                        storage_options=storage_options_for(url, config.write_storage_options))
