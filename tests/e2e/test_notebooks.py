"""The hub notebooks (notebooks/*.ipynb) run end to end on the small virtual world, and are
committed without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rhcloud.cluster import forget_closed_gateway

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT_S = 300


def _run(name: str, env: dict[str, Path | str], monkeypatch, probe: str) -> tuple:
    """Execute a notebook in its own directory (as Jupyter does) with ``env`` set for its
    kernel, plus a last ``probe`` cell that prints ``PROBE <json>``; returns the executed
    notebook and the probe's values."""
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))  # the kernel inherits this process's environment
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    line = next(x for x in _text(nb.cells[-1]).splitlines() if x.startswith("PROBE "))
    return nb, json.loads(line.removeprefix("PROBE "))


def _text(cell) -> str:
    """A cell's printed and displayed text (stdout and text/plain outputs)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def _cell(nb, snippet: str):
    """The one code cell whose source holds ``snippet``."""
    found = [c for c in nb.cells if c.cell_type == "code" and snippet in c.source]
    assert len(found) == 1, f"{len(found)} cells hold {snippet!r}"
    return found[0]


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for c in nb.cells
               for out in c.get("outputs", []))


@pytest.mark.parametrize("name", ["quickstart.ipynb", "drivers.ipynb"])
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code), \
        f"{name} has outputs: clear them before committing"


QUICKSTART_PROBE = (
    "import json\nprint('PROBE ' + json.dumps({"
    "'table1': table1[['source_id', 'r2', 'rmse']].to_dict('list'), "
    "'rel_error': float(conservation['rel_error'].abs().max()), "
    "'fields': sorted(results.data_vars), 'excluded': len(collected.excluded), "
    "'ranks': [int(r) for r in ranking['rank']], "
    "'closed': client.status}))")


def _world_models(world: Path) -> list[str]:
    return yaml.safe_load((world / "run.yaml").read_text())["models"]


@pytest.mark.slow
def test_quickstart(small_world, tmp_path, monkeypatch):
    models = _world_models(small_world)
    nb, probe = _run("quickstart.ipynb",
                     {"RHCLOUD_WORLD": small_world, "RHCLOUD_OUTPUT": tmp_path / "out"},
                     monkeypatch, QUICKSTART_PROBE)
    # Table 1: one row per model of the world, shown in the notebook
    table1 = _text(_cell(nb, "table1 = "))
    assert all(m in table1 for m in models), table1
    assert sorted(probe["table1"]["source_id"]) == sorted(models)
    assert all(0.5 < r2 <= 1 for r2 in probe["table1"]["r2"])
    assert all(rmse > 0 for rmse in probe["table1"]["rmse"])
    assert probe["excluded"] == 0
    assert probe["rel_error"] < 1e-6  # the regrid conserves every land total
    assert {"obs_median", "residual", "residual_median", "cov_MAP"} <= set(probe["fields"])
    assert probe["closed"] == "closed"  # the notebook stops the cluster it started
    # the selection and the products' totals are shown
    assert "historical Lmon rh stores from 13 models" in _text(_cell(nb, "cat.search("))
    totals = _text(_cell(nb, "global_totals = "))
    for name in ("warner2019", "hashimoto2015", "konings2019", "product_median"):
        assert name in totals
    figures = tmp_path / "out" / "quickstart-figures"
    assert {p.name for p in figures.glob("*.png")} == {
        "global_totals.png", "products.png", "residuals.png", "scores_portrait.png",
        "response_MAP.png"}
    assert _images(nb) == 5
    # the ranking by overall score: every model once, ranks 1..n
    ranking = _text(_cell(nb, "ranking = "))
    assert all(m in ranking for m in models), ranking
    assert sorted(probe["ranks"]) == list(range(1, len(models) + 1))


@pytest.mark.slow
def test_quickstart_on_gateway(gateway, small_world, tmp_path, monkeypatch):
    """The hub branch: ``Gateway()`` with no arguments, configured by the environment as a
    Pangeo hub does (here a real dask-gateway on loopback whose workers see local files)."""
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth

    address, proxy, password = gateway
    nb, probe = _run("quickstart.ipynb",
                     {"RHCLOUD_WORLD": small_world, "RHCLOUD_OUTPUT": tmp_path / "out",
                      "RHCLOUD_CLUSTER": "gateway", "DASK_GATEWAY__ADDRESS": address,
                      "DASK_GATEWAY__PROXY_ADDRESS": proxy, "DASK_GATEWAY__AUTH__TYPE": "basic",
                      "DASK_GATEWAY__AUTH__KWARGS__USERNAME": "rhcloud",
                      "DASK_GATEWAY__AUTH__KWARGS__PASSWORD": password},
                     monkeypatch, QUICKSTART_PROBE)
    assert "/clusters/" in _text(_cell(nb, "CLUSTER = "))  # a gateway cluster's dashboard
    assert sorted(probe["table1"]["source_id"]) == sorted(_world_models(small_world))
    assert probe["closed"] == "closed"
    with Gateway(address, proxy_address=proxy, auth=BasicAuth("rhcloud", password)) as gw:
        assert gw.list_clusters() == []  # the notebook shut its cluster down
    forget_closed_gateway(gw)


@pytest.mark.slow
def test_drivers(small_world, tmp_path, monkeypatch):
    out = tmp_path / "out"
    nb, probe = _run("drivers.ipynb",
                     {"RHCLOUD_WORLD": small_world, "RHCLOUD_OUTPUT": out,
                      # no finished run there: the notebook runs the stages itself
                      "RHCLOUD_RESULTS": tmp_path / "no-run" / "results.zarr"},
                     monkeypatch,
                     "import json\nprint('PROBE ' + json.dumps({"
                     "'map_p': map_p, 'dry': float(dry['effect']), "
                     "'wet': float(wet['effect']), 'n': int(result.best.n), "
                     "'terms': list(terms['term']), 'aic_rows': len(result.gls_aic()), "
                     "'quick_rows': len(quick.gls_aic()), "
                     "'quick_terms': list(quick.gamm_terms()['term'])}))")
    assert (out / "drivers-run" / "results.zarr").exists()  # the fallback run wrote it
    # the drivers' grid is coarse: about 1,300 land cells with every covariate
    assert 800 < probe["n"] < 2000
    # the AIC table: 5 structures with and without nugget, and none
    assert probe["aic_rows"] == 11
    assert "lowest AIC: " in _text(_cell(nb, "best = result.best"))
    assert probe["terms"] == ["s(MAT)", "s(MAP)", "s(SOC)", "s(NPPres)"]
    # the planted MAP bias is found: significant, and rising from dry to wet cells
    assert probe["map_p"] < 0.05
    assert probe["wet"] > probe["dry"]
    assert ": significant at the 5 % level" in _text(_cell(nb, "map_p = "))
    for table in ("gls_aic.csv", "gamm_terms.csv", "gamm_effects.csv", "drivers_summary.json"):
        assert (out / "drivers" / "tables" / table).exists()
    assert (out / "drivers-figures" / "gamm_effects_median.png").exists()
    # the standalone DataFrame fit: the structure chosen above, and none
    assert probe["quick_rows"] == 2
    assert probe["quick_terms"] == ["s(MAT)", "s(MAP)"]
    assert _images(nb) == 3
