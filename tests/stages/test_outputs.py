"""Outputs stage (issue 13): the summary counts excluded datasets, each once; tables and
provenance carry no credential."""

from __future__ import annotations

import json

import pandas as pd
import xarray as xr

from rhcloud.config import Config
from rhcloud.errors import Exclusion
from rhcloud.stages.catalog import Selection
from rhcloud.stages.climatology import Collected
from rhcloud.stages.outputs import RunResult, excluded_table, n_excluded_datasets, write_outputs


def _selection(rows) -> Selection:
    return Selection(pd.DataFrame(rows, columns=["source_id", "member_id", "variable_id",
                                                 "zstore"]))


def test_summary_counts_datasets_not_rows(tmp_path):
    """Nine datasets of three models fail, every member of each: excluded.csv has a row per
    dataset and one per model (12), the summary says 9 datasets, and one product file."""
    rows = [(m, f"r{i}i1p1f1", "rh", f"gs://b/{m}/r{i}") for m in ("A", "B", "C")
            for i in (1, 2, 3)]
    good = {"source_id": "D", "member_id": "r1i1p1f1", "variable_id": "rh", "zstore": "gs://d"}
    selection = _selection([*rows, tuple(good.values())])
    collected = Collected(datasets=[good],
                          excluded=[Exclusion(z, "bad", "climatology") for *_, z in rows])
    files = [Exclusion("/obs/konings.nc", "konings: file not found", "ingest")]
    table = excluded_table(selection, collected, files)
    assert len(table) == 9 + 1 + 3
    assert n_excluded_datasets(collected) == 9
    result = RunResult(Config(), selection.datasets, collected, {"excluded": table},
                       xr.Dataset(), exclusions=[*collected.excluded, *files])
    assert result.summary_notes()[0].startswith(
        "1 datasets used from 1 models, 9 excluded (and 1 other inputs); period")


def test_reasons_and_provenance_redacted(tmp_path):
    secret = "hunter2-planted"
    url = f"https://user:{secret}@host.example/store.zarr"
    collected = Collected(excluded=[Exclusion(url, f"cannot open store (403 for {url})",
                                              "ingest")])
    selection = _selection([("A", "r1i1p1f1", "rh", url)])
    table = excluded_table(selection, collected, [])
    assert secret not in table.to_csv() and "host.example/store.zarr" in table.to_csv()
    config = Config(storage_options={"key": secret, "endpoint_url": url})
    result = RunResult(config, selection.datasets, collected,
                       {"excluded": table}, xr.Dataset(), exclusions=collected.excluded)
    write_outputs(result, tmp_path)
    text = (tmp_path / "provenance.json").read_text()
    assert secret not in text
    prov = json.loads(text)
    assert prov["config"]["storage_options"] == {
        "key": "<redacted>", "endpoint_url": "https://<redacted>@host.example/store.zarr"}
