"""The evaluate stage's regional tables, responses and scores, and the CMEC bundle built from
them, on a small synthetic ensemble (no world, no cluster)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from rhcloud.core import grids
from rhcloud.core.regions import region_fractions
from rhcloud.stages import evaluate
from rhcloud.stages.outputs import cmec_metrics, score_ranking


@pytest.fixture(scope="module")
def ensemble():
    """Three models (one with two members) and two products on a T21-like grid; model
    'WET' respires too much where the covariate MAP is high."""
    grid = grids.gaussian_grid(32, 64)
    lat2, lon2 = np.meshgrid(grid.lat.values, grid.lon.values, indexing="ij")
    rng = np.random.default_rng(3)
    land = (np.cos(np.radians(lon2) * 3) + np.sin(np.radians(lat2) * 2) > 0).astype(float)
    map_ = 200 + 2500 * np.exp(-(lat2 / 20) ** 2) * (1 + 0.3 * np.cos(np.radians(lon2)))
    truth = 50 + 0.25 * map_
    ocean = land == 0
    prods = np.stack([truth * 0.95, truth * 1.05]) + rng.normal(0, 5, (2, *truth.shape))
    fields = {"GOOD r1": truth * 1.3, "GOOD r2": truth * 1.3 + 2,
              "FLAT r1": np.full_like(truth, truth[~ocean].mean()),
              "WET r1": truth + 0.3 * np.clip(map_ - 1000, 0, None)}
    rh = np.stack([np.where(ocean, np.nan, f + rng.normal(0, 10, f.shape))
                   for f in fields.values()])
    dims = ("lat", "lon")
    res = xr.Dataset(
        {"rh": (("dataset", *dims), rh),
         "rh_landfrac": (("dataset", *dims), np.broadcast_to(land, rh.shape).copy()),
         "obs_products": (("product", *dims), np.where(ocean, np.nan, prods)),
         "obs_landfrac": (("product", *dims), np.broadcast_to(land, prods.shape).copy()),
         "lat_bnds": grid["lat_bnds"], "lon_bnds": grid["lon_bnds"]},
        coords={"dataset": list(fields), "product": ["p1", "p2"], "lat": grid.lat,
                "lon": grid.lon,
                "source_id": ("dataset", [k.split()[0] for k in fields]),
                "member_id": ("dataset", [k.split()[1] for k in fields])})
    res["obs_median"] = res["obs_products"].median("product")
    res["obs_mad"] = abs(res["obs_products"] - res["obs_median"]).median("product")
    res["rh_member_mean"] = res["rh"].groupby("source_id").mean("dataset") \
        .rename(source_id="model")
    res["cell_area"] = grids.cell_area(grid)
    fields_ = xr.Dataset({"cov_MAP": (dims, np.where(ocean, np.nan, map_))},
                         coords={"lat": grid.lat, "lon": grid.lon})
    views = evaluate.ModelViews(res)
    fractions = region_fractions(grid, ("ar6", "band"), resolution=1.0)
    tables = evaluate.regional_tables(res, views, fractions)
    tables["responses"] = evaluate.response_table(res, fields_, views,
                                                  {"MAP": fields_["cov_MAP"]}, 8, {})
    tables["scores"] = evaluate.scores_table(res, views, tables["responses"],
                                             {"bias": 1, "rmse": 2, "distribution": 1,
                                              "response": 1})
    return res, tables


def test_regional_totals_add_up(ensemble):
    _, tables = ensemble
    reg = tables["regional_totals"]
    for _key, g in reg[reg["kind"] != "summary"].groupby(["kind", "name", "member_id"]):
        total = g.loc[g["region"] == "global", "total_PgC_yr"].iloc[0]
        for rset in ("ar6", "band"):
            assert g.loc[g["region_set"] == rset, "total_PgC_yr"].sum() == pytest.approx(
                total, rel=1e-12)
    good = reg[(reg["name"] == "GOOD") & (reg["region"] == "tropics")]
    members = good[good["member_id"] != "ensemble"]["total_PgC_yr"]
    assert good[good["member_id"] == "ensemble"]["total_PgC_yr"].iloc[0] == \
        pytest.approx(members.mean())
    summary = reg[(reg["kind"] == "summary") & (reg["region"] == "global")] \
        .set_index("name")["total_PgC_yr"]
    prods = reg[(reg["kind"] == "product") & (reg["region"] == "global")]["total_PgC_yr"]
    assert summary["product_median"] == pytest.approx(np.median(prods))


def test_responses_and_scores(ensemble):
    _, tables = ensemble
    resp = tables["responses"]
    band = resp[(resp["kind"] == "summary") & (resp["variable"] == "rh")]
    prods = resp[(resp["kind"] == "product") & (resp["name"] != "median")
                 & (resp["variable"] == "rh")]
    np.testing.assert_allclose(band[band["name"] == "product_max"]["mean"],
                               prods.groupby("bin")["mean"].max())
    # the observed curve holds every observed cell once
    med = resp[(resp["name"] == "median") & (resp["variable"] == "rh")]
    assert med["n_cells"].sum() == int(np.isfinite(ensemble[0]["obs_median"]).sum())
    scores = tables["scores"]
    ens = scores[scores["member_id"] == "ensemble"].set_index("source_id")
    # GOOD is 30 % high everywhere: a perfect shape, a worse bias; WET has the wrong shape
    assert ens.loc["GOOD", "score_response_MAP"] > 0.95
    assert ens["score_response_MAP"].idxmin() in ("WET", "FLAT")
    assert ens.loc["WET", "score_response_MAP"] < 0.8
    assert ens.loc["GOOD", "score_bias"] == pytest.approx(np.exp(-0.3), abs=0.02)
    assert ens.loc["FLAT", "score_distribution"] < 0.2  # no spatial pattern
    ranking = score_ranking(scores)
    assert list(ranking["rank"]) == [1, 2, 3]
    assert ranking["score_overall"].is_monotonic_decreasing


def test_cmec_metrics_equal_the_tables(ensemble):
    _, tables = ensemble
    doc = json.loads(json.dumps(cmec_metrics(tables), allow_nan=False))
    assert doc["DIMENSIONS"]["json_structure"] == ["model", "region", "metric"]
    reg = tables["regional_metrics"]
    row = reg[(reg["source_id"] == "WET") & (reg["region"] == "tropics")].iloc[0]
    assert doc["RESULTS"]["WET r1"]["tropics"]["rmse"] == row["rmse"]
    ens = reg[(reg["source_id"] == "GOOD") & (reg["member_id"] == "ensemble")
              & (reg["region"] == "SAH")].iloc[0]
    got = doc["RESULTS"]["GOOD"]["SAH"]
    for m in ("bias", "r2", "n_within_mad", "total_PgC_yr"):
        assert (got[m] is None) if pd.isna(ens[m]) else got[m] == ens[m]
    sc = tables["scores"].set_index(["source_id", "member_id"])
    assert doc["RESULTS"]["FLAT"]["global"]["score_overall"] == \
        sc.loc[("FLAT", "ensemble"), "score_overall"]
    assert set(doc["DIMENSIONS"]["region"]) >= {"tropics", "remainder", "global", "SAH"}


def test_kept_views_are_the_streamed_ones_and_tables_do_not_change(ensemble):
    res, tables = ensemble
    kept, streamed = evaluate.ModelViews(res), evaluate.ModelViews(res, keep_bytes=0)
    passes = [list(kept), list(kept), list(streamed), list(streamed)]
    assert kept._kept is not None and streamed._kept is None
    assert [(s, m) for s, m, _, _ in passes[0]] == \
        [*((s, m) for s, m in zip(res.source_id.values, res.member_id.values, strict=True)),
         *((m, evaluate.ENSEMBLE) for m in res.rh_member_mean.model.values)]
    for other in passes[1:]:
        for a, b in zip(passes[0], other, strict=True):
            assert a[:2] == b[:2]
            np.testing.assert_array_equal(a[2], b[2])
            np.testing.assert_array_equal(a[3], b[3])
    again = evaluate.scores_table(res, streamed, tables["responses"],
                                  {"bias": 1, "rmse": 2, "distribution": 1, "response": 1})
    pd.testing.assert_frame_equal(again, tables["scores"], check_exact=True)
