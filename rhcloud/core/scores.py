"""Scores on one scale: each statistic of a model field against the product median mapped
to [0, 1] (1 is perfect), and an overall weighted score. Pure numpy.

Over the land cells where model m and product median M are both finite, each cell once
(as Table 1), with means m̄, M̄ and standard deviations σ_m, σ_M (ddof 0):

    bias        b = m̄ − M̄                                  score_bias = exp(−|b| / M̄)
    RMSE        RMSE = √mean((m − M)²) (Table 1's)
    centred     cRMSE = √mean(((m − m̄) − (M − M̄))²)        score_rmse = exp(−cRMSE / σ_M)
    Taylor      σ = σ_m / σ_M, R = Pearson correlation
                score_distribution = 2 (1 + R) / (σ + 1/σ)²  (Taylor 2001, R₀ = 1)
    responses   score_response_<covariate>: ``rhcloud.core.responses.response_score``
    overall     Σ_k w_k s_k / Σ_k w_k over the scores that are defined, the response weight
                shared equally by the covariates' response scores

The RMSE score uses the centred RMSE so the bias is not counted twice (ILAMB's choice).
"""

from __future__ import annotations

import math

import numpy as np


def field_statistics(model: np.ndarray, median: np.ndarray) -> dict[str, float]:
    """n_cells, bias, rmse, crmse, std_ratio, correlation, obs_mean and obs_sd of one field."""
    m = np.asarray(model, dtype=np.float64).ravel()
    o = np.asarray(median, dtype=np.float64).ravel()
    ok = np.isfinite(m) & np.isfinite(o)
    m, o = m[ok], o[ok]
    nan = float("nan")
    if m.size < 2:
        return {"n_cells": int(m.size), "bias": nan, "rmse": nan, "crmse": nan,
                "std_ratio": nan, "correlation": nan, "obs_mean": nan, "obs_sd": nan}
    dm, do = m - m.mean(), o - o.mean()
    sm, so = float(np.sqrt(np.mean(dm**2))), float(np.sqrt(np.mean(do**2)))
    corr = float(np.mean(dm * do) / (sm * so)) if sm > 0 and so > 0 else nan
    return {"n_cells": int(m.size), "bias": float(m.mean() - o.mean()),
            "rmse": float(np.sqrt(np.mean((m - o) ** 2))),
            "crmse": float(np.sqrt(np.mean((dm - do) ** 2))),
            "std_ratio": sm / so if so > 0 else nan, "correlation": corr,
            "obs_mean": float(o.mean()), "obs_sd": so}


def statistic_scores(stats: dict[str, float]) -> dict[str, float]:
    """score_bias, score_rmse and score_distribution from :func:`field_statistics`."""
    s, r = stats["std_ratio"], stats["correlation"]
    dist = 2.0 * (1.0 + r) / (s + 1.0 / s) ** 2 if s > 0 and np.isfinite(r) else float("nan")
    return {"score_bias": math.exp(-abs(stats["bias"]) / stats["obs_mean"])
            if stats["obs_mean"] > 0 else float("nan"),
            "score_rmse": math.exp(-stats["crmse"] / stats["obs_sd"])
            if stats["obs_sd"] > 0 else float("nan"),
            "score_distribution": float(dist)}


def overall_score(scores: dict[str, float], weights: dict[str, float]) -> float:
    """The weighted mean of the defined scores: ``score_bias``, ``score_rmse``,
    ``score_distribution`` with their weights, and every ``score_response_*`` with the
    ``response`` weight divided by their number. NaN when no weighted score is defined."""
    responses = [k for k, v in scores.items()
                 if k.startswith("score_response_") and np.isfinite(v)]
    parts = [(weights.get(k.removeprefix("score_"), 0.0), scores[k])
             for k in ("score_bias", "score_rmse", "score_distribution")
             if k in scores and np.isfinite(scores[k])]
    parts += [(weights.get("response", 0.0) / len(responses), scores[k]) for k in responses]
    total = sum(w for w, _ in parts)
    return float(sum(w * s for w, s in parts) / total) if total > 0 else float("nan")


__all__ = ["field_statistics", "overall_score", "statistic_scores"]
