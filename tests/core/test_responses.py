"""Functional responses: binning by a covariate and the response score's formula."""

from __future__ import annotations

import numpy as np
import pytest

from rhcloud.core import responses as RS


def test_quantile_edges_and_binned_statistics():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3000, 5000)
    y = 0.2 * x + rng.normal(0, 10, x.size)
    y[:50] = np.nan
    edges = RS.quantile_edges(x, 5)
    assert edges.size == 6 and edges[0] == x.min() and edges[-1] == x.max()
    b = RS.binned(y, x, edges)
    assert b["n_cells"].sum() == np.isfinite(y).sum()
    ok = np.isfinite(y)
    inside = ok & (x >= edges[2]) & (x < edges[3])
    row = b.iloc[2]
    assert row["n_cells"] == inside.sum()
    assert row["mean"] == pytest.approx(y[inside].mean(), rel=1e-12)
    assert row["sd"] == pytest.approx(y[inside].std(), rel=1e-9)
    assert row["x_mean"] == pytest.approx(x[inside].mean(), rel=1e-12)
    last = ok & (x >= edges[4])  # the last bin is closed on the right
    assert b.iloc[4]["n_cells"] == last.sum()


def test_response_score_compares_shapes():
    o = np.array([100.0, 200.0, 300.0, 400.0])
    n = np.array([10, 10, 10, 10])
    assert RS.response_score(o, o, n) == pytest.approx(1.0)
    assert RS.response_score(1.5 * o, o, n) == pytest.approx(1.0)  # the bias is not shape
    steeper = o + np.array([0.0, 0.0, 50.0, 200.0])
    flatter = np.full(4, 250.0)
    s_steep = RS.response_score(steeper, o, n)
    # by hand: relative curves against the observed one, normalised by its variation
    ob, mb = o.mean(), steeper.mean()
    eps = np.sqrt(np.sum((steeper / mb - o / ob) ** 2)) / np.sqrt(np.sum((o / ob - 1) ** 2))
    assert s_steep == pytest.approx(np.exp(-eps), rel=1e-12)
    assert RS.response_score(flatter, o, n) == pytest.approx(np.exp(-1.0), rel=1e-12)
    assert 0 < s_steep < 1
    assert np.isnan(RS.response_score(o[:1], o[:1], n[:1]))
    assert RS.absolute_response_score(1.5 * o, o, n) == pytest.approx(np.exp(-0.5))
