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
    "regional_totals": ["region", "kind", "name", "member_id", "total_PgC_yr"],
    "regional_metrics": ["region", "region_set", "source_id", "member_id", "n_cells",
                         "n_within_mad", "rmse", "r2", "bias", "total_PgC_yr"],
    "responses": ["covariate", "variable", "kind", "name", "member_id", "bin", "lower",
                  "upper", "x_mean", "mean", "sd", "n_cells"],
    "scores": ["source_id", "member_id", "n_cells", "bias", "rmse", "crmse", "std_ratio",
               "correlation"],
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
            "gamm_effects_median.png", "gamm_effects_mean.png", "gls_aic_median.png",
            "regional_bias.png", "response_MAP.png", "response_MAT.png", "response_SOC.png",
            "scores_portrait.png", "taylor_diagram.png", "model_CanESM5.png",
            "regions_CanESM5.png"} <= figs
    assert (run_output / "cmec" / "output.json").exists()


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


def test_regional_totals_and_remainder_add_up_to_the_global_totals(run_output):
    """Per dataset and product: the AR6 regions with the remainder, and the latitude bands,
    each sum to the reference-grid land total (≤ 1e-9), which is the regridded total of
    tables/regrid_conservation.csv (≤ 1e-9) and the native total (≤ 1e-6)."""
    reg = pd.read_csv(run_output / "tables" / "regional_totals.csv", keep_default_na=False,
                      na_values=[""])
    reg["member_id"] = reg["member_id"].fillna("")
    cons = pd.read_csv(run_output / "tables" / "regrid_conservation.csv",
                       keep_default_na=False, na_values=[""]).fillna({"member_id": ""})
    cons = cons[cons["variable_id"].fillna("rh").isin(["rh"])]
    rows = reg[reg["kind"].isin(["model", "product"])]
    n = 0
    for (kind, name, member), g in rows.groupby(["kind", "name", "member_id"]):
        total = float(g.loc[g["region"] == "global", "total_PgC_yr"].iloc[0])
        for rset in ("ar6", "band"):
            part = g.loc[g["region_set"] == rset, "total_PgC_yr"].sum()
            assert part == pytest.approx(total, rel=1e-9), (kind, name, member, rset)
        if member != "ensemble":  # the conservation table names products' "observation"
            c = cons[(cons["name"] == name)
                     & (cons["member_id"] == (member if kind == "model" else "observation"))]
            assert total == pytest.approx(float(c["total_regridded_PgC_yr"].iloc[0]),
                                          rel=1e-9), (name, member)
            assert total == pytest.approx(float(c["total_native_PgC_yr"].iloc[0]), rel=1e-6)
        n += 1
    totals = pd.read_csv(run_output / "tables" / "global_totals.csv")
    rh = totals[(totals.variable_id == "rh") & totals.kind.isin(["model", "product"])]
    assert n == len(rh)  # every rh dataset, each model's member mean and every product
    assert {"remainder", "tropics", "temperate", "boreal", "SAH", "global"} <= set(reg.region)


def test_regional_metrics_global_rows_are_table_1(run_output):
    reg = pd.read_csv(run_output / "tables" / "regional_metrics.csv")
    t1 = pd.read_csv(run_output / "tables" / "model_metrics.csv")
    both = reg[reg["region"] == "global"].merge(t1, on=["source_id", "member_id"])
    assert len(both) == len(t1)
    for k in ("rmse", "r2", "bias", "n_within_mad"):
        np.testing.assert_allclose(both[f"{k}_x"], both[f"{k}_y"], rtol=1e-8)


def test_residual_response_to_map_follows_the_planted_driver(run_output):
    """The ESM residual binned by MAP follows the planted MAP bias binned the same way, and
    rises from the bin holding the bias centre to the wettest bin."""
    from rhcloud.core.responses import binned
    from rhcloud.world import planted

    resp = pd.read_csv(run_output / "tables" / "responses.csv")
    esm = resp[(resp.covariate == "MAP") & (resp.variable == "residual")
               & (resp.name == "residual_median")].sort_values("bin")
    res = xr.open_zarr(run_output / "results.zarr")
    lat2, lon2 = np.meshgrid(res.lat.values, res.lon.values, indexing="ij")
    edges = np.append(esm["lower"].to_numpy(), esm["upper"].iloc[-1])
    bias = binned(np.where(np.isfinite(res["obs_median"].values),
                           planted.map_bias(lat2, lon2), np.nan), res["cov_MAP"].values, edges)
    assert np.corrcoef(esm["mean"], bias["mean"])[0, 1] > 0.7
    centre = int(np.searchsorted(edges, planted.MAP_BIAS_CENTRE, side="right") - 1)
    rise = esm["mean"].iloc[-1] - esm["mean"].iloc[centre]
    assert rise > 0.5 * (bias["mean"].iloc[-1] - bias["mean"].iloc[centre]) > 0
    assert esm["mean"].iloc[-1] == esm["mean"].max()


def test_the_wet_biased_model_scores_lowest_on_the_map_response(run_output):
    from rhcloud.world import planted

    scores = pd.read_csv(run_output / "tables" / "scores.csv")
    ens = scores[scores.member_id == "ensemble"].set_index("source_id")
    assert ens["score_response_MAP"].idxmin() == planted.WET_BIAS_MODEL
    assert ((scores.filter(like="score_") >= 0) & (scores.filter(like="score_") <= 1)).all(
        axis=None)
    assert sorted(ens["rank"].astype(int)) == list(range(1, len(ens) + 1))


def test_cmec_bundle_parses_and_equals_the_tables(run_output):
    metrics = json.loads((run_output / "cmec" / "metrics.json").read_text())
    output = json.loads((run_output / "cmec" / "output.json").read_text())
    assert metrics["DIMENSIONS"]["json_structure"] == ["model", "region", "metric"]
    results = metrics["RESULTS"]
    assert set(metrics["DIMENSIONS"]["model"]) == set(results)
    reg = pd.read_csv(run_output / "tables" / "regional_metrics.csv")
    for row in reg.itertuples(index=False):
        key = row.source_id if row.member_id == "ensemble" else \
            f"{row.source_id} {row.member_id}"
        cell = results[key][row.region]
        for m in ("total_PgC_yr", "n_within_mad", "rmse", "r2", "bias"):
            want = getattr(row, m)
            assert (cell[m] is None) if pd.isna(want) else cell[m] == pytest.approx(want,
                                                                                    rel=1e-12)
    scores = pd.read_csv(run_output / "tables" / "scores.csv")
    row = scores[scores.member_id == "ensemble"].iloc[0]
    assert results[row.source_id]["global"]["score_overall"] == pytest.approx(
        row.score_overall, rel=1e-12)
    for section in ("data", "plots", "html", "metrics"):
        for entry in output[section].values():
            assert (run_output / entry["filename"]).exists(), entry["filename"]
    assert output["data"]["scores"]["filename"] == "tables/scores.csv"
    assert "scores_portrait" in output["plots"]


def test_summary_prints_the_score_ranking_after_table_1(run_output):
    printed = (run_output.parent / "stdout.txt").read_text()
    assert printed.index("overall score ranking") > printed.index("Table 1")
    scores = pd.read_csv(run_output / "tables" / "scores.csv")
    best = scores[(scores.member_id == "ensemble") & (scores["rank"] == 1)].source_id.iloc[0]
    lines = printed.splitlines()
    i = next(k for k, x in enumerate(lines) if x.startswith("overall score ranking"))
    assert lines[i + 2].split()[:2] == ["1", best]  # after the header line


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
    # the contents link every new section, which renders when scrolled to
    for anchor in ("s-scores", "s-regions", "s-functional-responses", "s-models",
                   "s-models--canesm5"):
        assert f"href='#{anchor}'" in dom.stdout or f'href="#{anchor}"' in dom.stdout, anchor
        assert f'id="{anchor}"' in dom.stdout or f"id='{anchor}'" in dom.stdout, anchor
    assert "localeCompare" in dom.stdout  # the sortable tables' script is inline
    # a window tall enough for the scores, regions, responses, maps and the first models:
    # every band of it is drawn (no blank stretch where a section failed to render)
    from PIL import Image

    tall = tmp_path / "report-tall.png"
    done = subprocess.run(["chromium", *flags, "--window-size=1200,12000",
                           f"--screenshot={tall}", url], capture_output=True, timeout=240)
    assert done.returncode == 0
    pixels = np.asarray(Image.open(tall).convert("L"))
    assert pixels.shape == (12000, 1200)
    drawn = (pixels < 240).mean(axis=1)
    bands = drawn.reshape(12, 1000).max(axis=1)
    assert (bands > 0.05).all(), bands


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
