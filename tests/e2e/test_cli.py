"""The command line end to end on a tiny world: world → catalog → run, and config errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import xarray as xr

from rhcloud.cli import main

pytestmark = pytest.mark.slow


def test_world_then_run(tmp_path, capsys):
    root = tmp_path / "w"
    assert main(["world", "--root", str(root), "--years", "1989", "1992", "--truth-period",
                 "1990", "1991", "--models", "CanESM5,UKESM1-0-LL", "--members", "2"]) == 0
    truth = json.loads((root / "truth.json").read_text())
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"catalog: {root / 'local-cmip6.json'}\nmodels: all\nmembers: all\n"
                   "period: [1990, 1991]\nvariables: [rh]\n"
                   "cluster: {kind: local, n_workers: 1}\n")
    assert main(["run", str(cfg), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "4 datasets used from 2 models, 0 excluded" in out
    assert "no observation product: Table 1 and residuals skipped" in out
    totals = pd.read_csv(tmp_path / "out" / "tables" / "global_totals.csv")
    assert list(totals.columns) == ["kind", "name", "member_id", "total_PgC_yr", "variable_id",
                                    "landfrac_source"]  # issue 12: which land fraction
    assert sorted(totals.member_id) == ["r1i1p1f1", "r1i1p1f2", "r2i1p1f1", "r2i1p1f2"]
    want = sorted(v["total_PgC_yr"] for v in truth["datasets"].values()
                  if v["variable_id"] == "rh")
    assert sorted(totals.total_PgC_yr) == pytest.approx(want, rel=1e-6)
    cons = pd.read_csv(tmp_path / "out" / "tables" / "regrid_conservation.csv")
    assert list(cons.columns[:5]) == ["name", "member_id", "total_native_PgC_yr",
                                      "total_regridded_PgC_yr", "rel_error"]
    assert len(cons) == 4 and (cons.rel_error.abs() <= 1e-6).all()
    results = xr.open_zarr(tmp_path / "out" / "results.zarr")
    assert results["rh"].sizes == {"dataset": 4, "lat": 128, "lon": 256}
    assert sorted(results.source_id.values) == ["CanESM5", "CanESM5", "UKESM1-0-LL",
                                                "UKESM1-0-LL"]
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["config"]["members"] == "all" and len(prov["datasets"]) == 4
    assert len(list((tmp_path / "out" / "cache").glob("*.json"))) == 4

    # a rerun resumes from the cache (the default); --fresh recomputes; same tables both ways
    assert main(["run", str(cfg), "--output", str(tmp_path / "out")]) == 0
    assert "4 climatologies read from the cache" in capsys.readouterr().out
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "out" / "tables" / "global_totals.csv"), totals)
    assert main(["run", str(cfg), "--output", str(tmp_path / "out"), "--fresh"]) == 0
    out = capsys.readouterr().out
    assert "(0 from the cache)" in out and "read from the cache" not in out


def test_config_errors_are_clear(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("member: all\n")
    assert main(["catalog", str(cfg)]) == 2
    assert "did you mean 'members'" in capsys.readouterr().err
    cfg.write_text("period: [2010, 1990]\n")
    assert main(["catalog", str(cfg)]) == 2
    assert "before first year" in capsys.readouterr().err
    assert main(["catalog", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # names that become file names are checked before any data is read
    cfg.write_text("drivers: {residuals: ['../../escape']}\n")
    assert main(["catalog", str(cfg)]) == 2
    assert "drivers.residuals" in capsys.readouterr().err
    cfg.write_text("drivers: {grids: regular:5}\n")
    assert main(["catalog", str(cfg)]) == 2
    assert "drivers: unknown keys 'grids' (did you mean 'grid'?)" in capsys.readouterr().err


def test_drivers_on_a_results_zarr(tmp_path, capsys):
    """``rhcloud drivers results.zarr --response VAR``: variables of a finished run's store
    (NaN cells, as over the ocean, left out)."""
    import numpy as np

    rng = np.random.default_rng(3)
    lat, lon = np.arange(-30.0, 30.0, 4.0), np.arange(0.0, 80.0, 4.0)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    mat = 25 - 0.4 * np.abs(la) + rng.normal(0, 1, la.shape)
    resid = 30 * np.tanh((mat - 15) / 5) + rng.normal(0, 5, la.shape)
    resid[:, -3:] = np.nan
    ds = xr.Dataset({"residual_median": (("lat", "lon"), resid),
                     "cov_MAT": (("lat", "lon"), mat)}, coords={"lat": lat, "lon": lon})
    ds.to_zarr(tmp_path / "results.zarr", zarr_format=2)
    out = tmp_path / "d"
    assert main(["drivers", str(tmp_path / "results.zarr"), "--response", "residual_median",
                 "--smooth", "cov_MAT", "--structures", "exponential", "--no-figures",
                 "--output", str(out)]) == 0
    aic = pd.read_csv(out / "tables" / "gls_aic.csv")
    assert len(aic) == 3 and (aic["n"] == np.isfinite(resid).sum()).all()
    terms = pd.read_csv(out / "tables" / "gamm_terms.csv")
    assert terms.set_index("term").loc["s(cov_MAT)", "p_value"] < 1e-6
    assert "best structure" in capsys.readouterr().out
    # --cache: the second run reads its 2 GLS fits and the GAMM, and writes the same tables
    args = ["drivers", str(tmp_path / "results.zarr"), "--response", "residual_median",
            "--smooth", "cov_MAT", "--structures", "exponential", "--no-figures",
            "--cache", str(tmp_path / "fits")]
    assert main([*args, "--output", str(tmp_path / "c1")]) == 0
    assert "0 of 3 fits read from" in capsys.readouterr().out
    assert main([*args, "--output", str(tmp_path / "c2")]) == 0
    assert "3 of 3 fits read from" in capsys.readouterr().out
    for name in ("gls_aic", "gamm_terms", "gamm_effects"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "c2" / "tables" / f"{name}.csv"),
                                      pd.read_csv(out / "tables" / f"{name}.csv"))


def test_relative_paths_are_relative_to_the_config(tmp_path):
    from rhcloud.config import load_config

    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "sub" / "run.yaml"
    cfg.write_text("catalog: cat.json\n"
                   "products: [{name: a, reader: warner, path: [obs/a.tif, /abs/b.tif]}]\n"
                   "npp_reference: {name: g, reader: gimms, path: gs://bucket/npp.nc}\n"
                   "covariates: {MAT: {reader: gswp3, path: ../tas.nc, variable: tas}}\n")
    c = load_config(cfg)
    assert c.catalog == str(tmp_path / "sub" / "cat.json")
    assert c.products[0]["path"] == [str(tmp_path / "sub" / "obs" / "a.tif"), "/abs/b.tif"]
    assert c.npp_reference["path"] == "gs://bucket/npp.nc"
    assert c.covariates["MAT"]["path"] == str(tmp_path / "tas.nc")
