"""Scores on one scale: the documented formulas, and the weighted overall score."""

from __future__ import annotations

import numpy as np
import pytest

from rhcloud.core import scores as S

WEIGHTS = {"bias": 1.0, "rmse": 2.0, "distribution": 1.0, "response": 1.0}


def test_a_perfect_field_scores_one():
    o = np.random.default_rng(0).uniform(50, 800, 400)
    stats = S.field_statistics(o, o)
    assert stats["bias"] == 0 and stats["crmse"] == 0 and stats["correlation"] == \
        pytest.approx(1.0)
    sc = S.statistic_scores(stats)
    assert sc == pytest.approx({"score_bias": 1.0, "score_rmse": 1.0,
                                "score_distribution": 1.0})


def test_statistic_scores_follow_the_formulas():
    rng = np.random.default_rng(1)
    o = rng.uniform(50, 800, 1000)
    m = 0.8 * o + 60 + rng.normal(0, 50, o.size)
    m[:10] = np.nan
    stats = S.field_statistics(m, o)
    ok = np.isfinite(m)
    mm, oo = m[ok], o[ok]
    sigma = mm.std() / oo.std()
    r = np.corrcoef(mm, oo)[0, 1]
    assert stats["std_ratio"] == pytest.approx(sigma, rel=1e-12)
    assert stats["correlation"] == pytest.approx(r, rel=1e-12)
    assert stats["rmse"] == pytest.approx(np.sqrt(np.mean((mm - oo) ** 2)), rel=1e-12)
    sc = S.statistic_scores(stats)
    assert sc["score_bias"] == pytest.approx(np.exp(-abs(mm.mean() - oo.mean()) / oo.mean()))
    crmse = np.sqrt(np.mean(((mm - mm.mean()) - (oo - oo.mean())) ** 2))
    assert sc["score_rmse"] == pytest.approx(np.exp(-crmse / oo.std()), rel=1e-12)
    assert sc["score_distribution"] == pytest.approx(2 * (1 + r) / (sigma + 1 / sigma) ** 2)


def test_overall_score_weights_and_shares_the_response_weight():
    scores = {"score_bias": 0.5, "score_rmse": 0.8, "score_distribution": 0.9,
              "score_response_MAP": 0.2, "score_response_MAT": 0.6}
    want = (1 * 0.5 + 2 * 0.8 + 1 * 0.9 + 0.5 * 0.2 + 0.5 * 0.6) / 5
    assert S.overall_score(scores, WEIGHTS) == pytest.approx(want)
    # an undefined score drops out with its weight
    scores["score_response_MAT"] = float("nan")
    want = (1 * 0.5 + 2 * 0.8 + 1 * 0.9 + 1 * 0.2) / 5
    assert S.overall_score(scores, WEIGHTS) == pytest.approx(want)
    assert S.overall_score(scores, {**WEIGHTS, "rmse": 0.0, "bias": 0.0, "distribution": 0,
                                    "response": 1.0}) == pytest.approx(0.2)
