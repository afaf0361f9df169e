"""End to end: `rhcloud run` with members: all against the GCS emulator writes the whole
output contract; values checked against independent numpy computations; a model whose every
member fails is excluded and the run completes; the report opens in headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess

import gcsfs
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from rhcloud.cli import main
from rhcloud.world.generate import truth_key

pytestmark = pytest.mark.slow

CONTRACT_TABLES = {
    "global_totals": ["kind", "name", "member_id", "total_PgC_yr"],
    "model_metrics": ["source_id", "member_id", "n_within_mad", "rmse", "r2", "total_PgC_yr"],
    "regrid_conservation": ["name", "member_id", "total_native_PgC_yr",
                            "total_regridded_PgC_yr", "rel_error"],
    "excluded": ["zstore", "reason"],
    "gls_aic": ["structure", "nugget", "method", "loglik", "aic", "bic", "range",
                "nugget_value", "n"],
    "gamm_terms": ["term", "edf", "stat", "p_value"],
    "gamm_effects": ["residual", "term", "x", "effect", "se"],
}


@pytest.fixture(scope="module")
def scratch_bucket(tmp_path_factory):
    """A second, empty bucket for outputs (as a user's own scratch bucket)."""
    from rhcloud.testing.emulator import GCSEmulator

    with GCSEmulator(tmp_path_factory.mktemp("scratch"), bucket="scratch") as url:
        yield url


@pytest.fixture(scope="module")
def run_output(gcs_world, small_world, scratch_bucket, tmp_path_factory):
    fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=gcs_world)
    # a catalog with one more model whose only store is missing, uploaded through the API
    df = pd.read_csv(small_world / "pangeo-cmip6.csv")
    broken = df[(df.source_id == "BCC-ESM1") & (df.variable_id == "rh")].copy()
    broken["source_id"] = "BROKEN-ESM"
    broken["zstore"] = "gs://cmip6/CMIP6/CMIP/XX/BROKEN-ESM/historical/r1i1p1f1/Lmon/rh/gn/v1/"
    fs.pipe("cmip6/with-broken.csv", pd.concat([df, broken]).to_csv(index=False).encode())
    spec = json.loads((small_world / "pangeo-cmip6.json").read_text())
    spec["catalog_file"] = "gs://cmip6/with-broken.csv"
    fs.pipe("cmip6/with-broken.json", json.dumps(spec).encode())

    config = yaml.safe_load((small_world / "run.yaml").read_text())
    config.update(catalog="gs://cmip6/with-broken.json", models="all", members="all",
                  storage_options={"token": "anon", "endpoint_url": gcs_world},
                  cluster={"kind": "local", "n_workers": 2},
                  output_storage_options={"token": "anon", "endpoint_url": scratch_bucket},
                  drivers={"grid": "regular:5", "structures": ["rational", "exponential"]})
    tmp = tmp_path_factory.mktemp("run")
    (tmp / "run.yaml").write_text(yaml.safe_dump(config))
    # outputs go to a bucket, as in a batch job, and are fetched back to be checked
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(tmp / "run.yaml"), "--output", "gs://scratch/runs/e2e"]) == 0
    (tmp / "stdout.txt").write_text(printed.getvalue())
    out = tmp / "out"
    scratch = gcsfs.GCSFileSystem(token="anon", endpoint_url=scratch_bucket)
    scratch.get("scratch/runs/e2e/", str(out), recursive=True)
    return out


def test_every_contract_file_written(run_output):
    for name, cols in CONTRACT_TABLES.items():
        df = pd.read_csv(run_output / "tables" / f"{name}.csv")
        assert list(df.columns[: len(cols)]) == cols, name
    for f in ("results.zarr", "report.html", "provenance.json", "tables/site_metrics.csv"):
        assert (run_output / f).exists(), f
    figs = {p.name for p in (run_output / "figures").glob("*.png")}
    assert {"global_totals.png", "products.png", "model_residuals.png", "esm_residual.png",
            "zonal_means.png", "product_differences.png", "model_mean.png",
            "gamm_effects_median.png", "gamm_effects_mean.png", "gls_aic_median.png"} <= figs


def test_drivers_find_the_planted_map_driver(run_output):
    terms = pd.read_csv(run_output / "tables" / "gamm_terms.csv")
    assert set(terms.residual) == {"median", "mean"}
    aic = pd.read_csv(run_output / "tables" / "gls_aic.csv")
    assert set(aic.structure) == {"rational", "exponential", "none"}
    mean_map = terms[(terms.residual == "mean") & (terms.term == "s(MAP)")]
    assert float(mean_map.p_value.iloc[0]) < 0.05


def test_broken_model_excluded_run_completes(run_output):
    excluded = pd.read_csv(run_output / "tables" / "excluded.csv")
    broken = excluded[excluded.zstore.str.contains("BROKEN-ESM")]
    assert len(broken) == 2  # the store, and the model with every member failed
    assert broken.reason.str.contains("cannot open store").any()
    assert broken.reason.str.contains("every selected member failed").any()
    totals = pd.read_csv(run_output / "tables" / "global_totals.csv")
    assert "BROKEN-ESM" not in set(totals.name)


def test_values_against_independent_computation(run_output, truth):
    res = xr.open_zarr(run_output / "results.zarr").load()
    totals = pd.read_csv(run_output / "tables" / "global_totals.csv")
    prov = json.loads((run_output / "provenance.json").read_text())
    # model totals: exactly the planted truth
    for d in prov["datasets"]:
        row = totals[(totals.name == d["source_id"]) & (totals.member_id == d["member_id"])
                     & (totals.variable_id == d["variable_id"])]
        want = truth["datasets"][truth_key(d["zstore"])]["total_PgC_yr"]
        assert float(row.total_PgC_yr.iloc[0]) == pytest.approx(want, rel=1e-6)
    # product totals: the stand-ins' own truth
    for name, t in truth["observations"]["products"].items():
        got = totals[(totals.kind == "product") & (totals.name == name)].total_PgC_yr
        assert float(got.iloc[0]) == pytest.approx(t["total_PgC_yr"], rel=1e-6)
    # obs median / MAD by numpy
    p = res["obs_products"].values
    med = np.median(p, axis=0)
    np.testing.assert_allclose(res["obs_median"].values, med, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(res["obs_mad"].values, np.median(np.abs(p - med), axis=0),
                               rtol=1e-12, atol=1e-12, equal_nan=True)
    # Table 1 for one dataset by hand, over the cells at least half land (the default)
    from rhcloud.core.landmask import land_fraction

    metrics = pd.read_csv(run_output / "tables" / "model_metrics.csv")
    k = int(np.flatnonzero(res.source_id.values == "UKESM1-0-LL")[0])
    m = res["rh"].values[k]
    lf = land_fraction(res[["lat_bnds", "lon_bnds"]])
    np.testing.assert_array_equal(res["reference_landfrac"].values, lf)
    ok = np.isfinite(m) & np.isfinite(med) & (lf >= 0.5)
    row = metrics[(metrics.source_id == "UKESM1-0-LL")
                  & (metrics.member_id == str(res.member_id.values[k]))].iloc[0]
    assert row.rmse == pytest.approx(np.sqrt(np.mean((m[ok] - med[ok]) ** 2)), rel=1e-10)
    assert row.r2 == pytest.approx(np.corrcoef(m[ok], med[ok])[0, 1] ** 2, rel=1e-10)
    mad = res["obs_mad"].values
    assert row.n_within_mad == int(np.sum(np.abs(m[ok] - med[ok]) <= mad[ok]))
    assert row.n_cells == int(ok.sum())
    # each model once in the ESM residual, over the evaluated cells
    ens = res["rh"].groupby("source_id").mean("dataset") \
        - res["obs_median"].where(res["reference_landfrac"] >= 0.5)
    np.testing.assert_allclose(res["residual_median"].values, ens.median("source_id").values,
                               rtol=1e-12, equal_nan=True)
    cons = pd.read_csv(run_output / "tables" / "regrid_conservation.csv")
    assert (cons.rel_error.abs() <= 1e-6).all()
    assert {"warner2019", "konings2019", "MAT", "MAP", "SOC"} <= set(cons.name)


def test_residual_recovers_planted_bias(run_output):
    """The ESM residual correlates with the planted bias pattern (MAP driver + common
    correlated error) evaluated on the reference grid."""
    from rhcloud.world import planted

    res = xr.open_zarr(run_output / "results.zarr").load()
    lat2, lon2 = np.meshgrid(res.lat.values, res.lon.values, indexing="ij")
    planted_bias = planted.map_bias(lat2, lon2) + planted.SmoothNoise.from_seed(0)(lat2, lon2)
    r = res["residual_median"].values
    ok = np.isfinite(r) & (res["obs_median"].values > 50)
    corr = np.corrcoef(r[ok], planted_bias[ok])[0, 1]
    assert corr > 0.5, corr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_opens_in_headless_chromium(run_output, tmp_path):
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    url = (run_output / "report.html").resolve().as_uri()
    dom = subprocess.run(["chromium", *flags, "--dump-dom", url], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0
    n_png = len(list((run_output / "figures").glob("*.png")))
    assert dom.stdout.count("data:image/png;base64,") == n_png
    done = subprocess.run(["chromium", *flags, "--window-size=1200,3000",
                           f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 50_000


def test_summary_names_the_report_in_the_bucket(run_output):
    printed = (run_output.parent / "stdout.txt").read_text()
    assert "[rhcloud] outputs written to gs://scratch/runs/e2e" in printed
    assert printed.rstrip().endswith("report: gs://scratch/runs/e2e/report.html")


def test_climatologies_cached_in_the_bucket(run_output):
    """The run's cache sits beside its outputs in the bucket: one complete entry per dataset."""
    prov = json.loads((run_output / "provenance.json").read_text())
    markers = list((run_output / "cache").glob("*.json"))
    assert len(markers) == len(prov["datasets"])
    entry = json.loads(markers[0].read_text())
    assert entry["zstore"].startswith("gs://cmip6/") and entry["fingerprints"]["zstore"]
    # and the drivers' fits: 2 residuals × (2 structures × 2 nuggets + the GAMM)
    assert len(list((run_output / "cache" / "fits").glob("*.json"))) == 2 * (2 * 2 + 1)


def test_a_rerun_recomputes_nothing_and_writes_the_same_tables(run_output, scratch_bucket,
                                                              tmp_path):
    """The same job again (a retried pod): every climatology and every drivers fit comes from
    the cache in the bucket, and the tables are the first run's."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(run_output.parent / "run.yaml"),
                     "--output", "gs://scratch/runs/e2e"]) == 0
    out = printed.getvalue()
    assert "climatology: 42 done (42 from the cache), 1 excluded" in out
    assert "(10 of 10 fits from the cache)" in out
    scratch = gcsfs.GCSFileSystem(token="anon", endpoint_url=scratch_bucket)
    scratch.get("scratch/runs/e2e/tables/", str(tmp_path / "tables"), recursive=True)
    for name in [*CONTRACT_TABLES, "site_metrics"]:
        assert (tmp_path / "tables" / f"{name}.csv").read_bytes() == \
            (run_output / "tables" / f"{name}.csv").read_bytes(), name
