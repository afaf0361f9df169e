"""Unit tests of the evaluation metrics against hand-computed values and numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from rhcloud.core import metrics as evaluate


def _field(values, dims=("lat", "lon")):
    return xr.DataArray(np.asarray(values, dtype=float), dims=dims)


def test_median_and_mad_by_hand():
    products = xr.DataArray(np.array([[[1.0, 10.0]], [[2.0, 20.0]], [[6.0, np.nan]]]),
                            dims=("product", "lat", "lon"))
    med, mad = evaluate.obs_median_mad(products)
    assert med.values.tolist() == [[2.0, pytest.approx(np.nan, nan_ok=True)]]
    # |1-2|, |2-2|, |6-2| → 1, 0, 4 → median 1
    assert mad.values[0, 0] == 1.0 and np.isnan(mad.values[0, 1])


def test_metrics_by_hand():
    model = _field([[1.0, 2.0, 3.0, np.nan]])
    obs = _field([[1.5, 2.0, 5.0, 4.0]])
    mad = _field([[0.5, 0.1, 1.0, 1.0]])
    m = evaluate.metrics(model, obs, mad)
    assert m["n_cells"] == 3 and m["n_within_mad"] == 2
    assert m["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 4) / 3))
    assert m["bias"] == pytest.approx((-0.5 + 0 - 2) / 3)
    r = scipy.stats.pearsonr([1, 2, 3], [1.5, 2.0, 5.0]).statistic
    assert m["r2"] == pytest.approx(r**2)


def test_area_weighted_r2_matches_weighted_formula():
    rng = np.random.default_rng(0)
    x, y, w = rng.normal(size=50), rng.normal(size=50), rng.uniform(0.1, 1, 50)
    m = evaluate.metrics(_field([x]), _field([y]), _field([np.ones(50)]), _field([w]))
    c = np.cov(x, y, aweights=w)
    assert m["r2"] == pytest.approx(c[0, 1] ** 2 / (c[0, 0] * c[1, 1]))


def test_area_weights_by_hand():
    model = _field([[100.0, 300.0, 250.0, np.nan, 80.0]])
    obs = _field([[120.0, 200.0, 260.0, 90.0, 10.0]])
    mad = _field([[30.0, 50.0, 20.0, 10.0, 5.0]])
    area = np.array([2.0, 1.0, 3.0, 1.0, 4.0])
    landfrac = np.array([0.9, 0.6, 1.0, 1.0, np.nan])  # the last cell is not evaluated
    m = evaluate.metrics(model, obs, mad, _field([area * landfrac]))
    w = np.array([1.8, 0.6, 3.0])
    d = np.array([-20.0, 100.0, -10.0])
    x, y = np.array([100.0, 300.0, 250.0]), np.array([120.0, 200.0, 260.0])
    assert m["n_cells"] == 3 and m["n_within_mad"] == 2
    assert m["rmse"] == pytest.approx(np.sqrt((1.8 * 400 + 0.6 * 1e4 + 3.0 * 100) / 5.4))
    assert m["bias"] == pytest.approx((1.8 * -20 + 0.6 * 100 + 3.0 * -10) / 5.4)
    mx, my = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    cov = (w * (x - mx) * (y - my)).sum()
    assert m["r2"] == pytest.approx(cov**2 / ((w * (x - mx) ** 2).sum()
                                              * (w * (y - my) ** 2).sum()))
    assert m["rmse"] == pytest.approx(np.sqrt(np.average(d**2, weights=w)))


def test_each_model_counts_once():
    models = xr.DataArray(np.array([[[1.0]], [[3.0]], [[3.0]], [[3.0]], [[10.0]]]),
                          dims=("dataset", "lat", "lon"),
                          coords={"source_id": ("dataset", ["A", "B", "B", "B", "C"]),
                                  "member_id": ("dataset", ["r1", "r1", "r2", "r3", "r1"])})
    obs = _field([[0.0]])
    once = evaluate.esm_residual(evaluate.member_mean(models), obs)
    assert float(once.residual_median.squeeze()) == 3.0
    assert float(once.residual_mean.squeeze()) == pytest.approx(
        (1 + 3 + 10) / 3)
    per = evaluate.esm_residual(models, obs, "dataset")
    assert float(per.residual_mean.squeeze()) == pytest.approx(20 / 5)


def test_zonal_mean_counts_ocean_as_zero():
    field = _field([[2.0, np.nan, 4.0, 6.0]])
    land = _field([[1.0, 0.0, 0.5, 1.0]])
    assert float(evaluate.zonal_mean(field, land)[0]) == pytest.approx((2 + 0 + 2 + 6) / 4)
