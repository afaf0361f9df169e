"""API, CLI and figures on a field with planted drivers (great-circle distances)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from drivers_helpers import planted_grid_world

from rhcloud.drivers import cli
from rhcloud.drivers.api import EFFECTS_COLUMNS, GLS_COLUMNS, TERMS_COLUMNS, fit_drivers
from rhcloud.drivers.figures import aic_table_figure, aic_table_html, partial_effects_figure


@pytest.fixture(scope="module")
def planted():
    df, truth = planted_grid_world()
    res = fit_drivers(df, response="residual", smooth=["MAT", "MAP", "SOC"],
                      factor=["lithology"], residual_label="median")
    return df, truth, res


def test_planted_drivers_recovered(planted):
    df, truth, res = planted
    table = res.gls_aic()
    assert list(table.columns) == GLS_COLUMNS
    assert len(table) == 11
    assert table.iloc[0]["structure"] != "none"
    none_aic = table.loc[table.structure == "none", "aic"].item()
    assert table.iloc[0]["aic"] < none_aic  # spatial correlation detected
    terms = res.gamm_terms().set_index("term")
    assert list(res.gamm_terms().columns) == TERMS_COLUMNS
    assert terms.loc["s(MAT)", "p_value"] < 1e-3
    assert terms.loc["s(MAP)", "p_value"] < 1e-3
    assert terms.loc["s(SOC)", "p_value"] > 0.05  # pure noise
    assert terms.loc["lithology", "p_value"] < 0.05  # planted (kept by the rule)
    assert not res.gamm.factor_dropped
    fit = res.gamm.fit
    for name in ("MAT", "MAP"):
        x = df[name].to_numpy()
        xg = np.linspace(np.percentile(x, 5), np.percentile(x, 95), 40)
        f, se = fit.predict_term(name, xg)
        t = truth[name](xg) - truth[name](x).mean()  # smooths are centred over the data
        inside = np.abs(f - t) <= 1.96 * se + 1e-9
        assert inside.mean() >= 0.9, (name, inside.mean())
        assert np.corrcoef(f, t)[0, 1] > 0.95


def test_tables_and_figures_written(planted, tmp_path):
    _, _, res = planted
    paths = res.write(tmp_path)
    # one schema for every writer: the residual each row belongs to, last
    gls = pd.read_csv(paths["gls_aic"])
    assert list(gls.columns) == [*GLS_COLUMNS, "residual"] and set(gls.residual) == {"median"}
    terms = pd.read_csv(paths["gamm_terms"])
    assert list(terms.columns) == [*TERMS_COLUMNS, "residual"]
    eff = pd.read_csv(paths["gamm_effects"])
    assert list(eff.columns) == EFFECTS_COLUMNS
    assert set(eff.residual) == {"median"}
    assert set(eff.term) == {"MAT", "MAP", "SOC"}
    assert (eff.se > 0).all()
    png = partial_effects_figure(res, tmp_path / "eff.png")
    assert png.stat().st_size > 10_000
    assert aic_table_figure(res.gls_aic(), tmp_path / "aic.png").stat().st_size > 5_000
    assert "<table" in aic_table_html(res.gls_aic())


def test_dataset_input_and_cli(tmp_path):
    df, _ = planted_grid_world(seed=6)
    df = df.iloc[:200].copy()  # a smaller field for speed
    ds = df.drop(columns="lithology").set_index(["lat", "lon"]).to_xarray()
    ds["residual"] = ds["residual"].where(ds["lon"] < 30)  # "ocean" cells: NaN
    res = fit_drivers(ds, "residual", smooth=["MAT"], structures=["exponential"],
                      residual_label="mean")
    n_land = int(np.isfinite(ds["residual"]).sum())
    assert res.best.n == n_land
    assert len(res.gls_aic()) == 3
    assert set(res.gamm_effects().residual) == {"mean"}

    csv = tmp_path / "cells.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "out"
    args = ["--response", "residual", "--smooth", "MAT,SOC", "--factor", "lithology",
            "--distance", "lonlat", "--structures", "exponential,rational", "--output", str(out)]
    assert cli.main([str(csv), *args]) == 0
    for name in ("gls_aic", "gamm_terms", "gamm_effects"):
        assert (out / "tables" / f"{name}.csv").exists()
    assert (out / "figures" / "gls_aic_median.png").exists()
    gls = pd.read_csv(out / "tables" / "gls_aic.csv")
    assert len(gls) == 5
    # the schema `rhcloud run` writes too (one writer: rhcloud.drivers.api.drivers_tables)
    assert list(gls.columns) == [*GLS_COLUMNS, "residual"] and set(gls.residual) == {"median"}
    terms = pd.read_csv(out / "tables" / "gamm_terms.csv")
    assert list(terms.columns) == [*TERMS_COLUMNS, "residual"]
    pq = tmp_path / "cells.parquet"
    df.to_parquet(pq)
    assert cli.main([str(pq), *args, "--no-figures", "--output", str(tmp_path / "o2")]) == 0
    assert cli.main([str(csv), "--response", "nope", "--output", str(tmp_path / "o3")]) == 2
