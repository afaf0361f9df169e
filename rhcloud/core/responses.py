"""Functional responses (ILAMB's "relationships"): a field binned by a covariate, and how
close a model's curve is to the observed one. Pure numpy/pandas.

For a covariate x (MAP, MAT, SOC on the reference grid) and bin edges e_0 < … < e_B (from
the quantiles of x over the observed cells, or given), bin b holds the cells with
e_{b-1} ≤ x < e_b (the last bin closed on the right). Per bin: the mean, the standard
deviation (ddof 0) and the number of cells of the field, each cell counted once (as in
Table 1).

Response score of a model curve m_b against the observed curve o_b (the product median's),
with n_b the observed cells per bin, over the bins both define:

    ō = Σ n_b o_b / Σ n_b,  m̄ = Σ n_b m_b / Σ n_b      (curve means)
    ε = √(Σ n_b (m_b/m̄ − o_b/ō)²) / √(Σ n_b (o_b/ō − 1)²)
    S = exp(−ε)  ∈ (0, 1]

It compares the curves' *shapes*, each relative to its own mean: the error of the model's
relative response, normalised by how much the observed relative response varies. A model
uniformly 50 % too high scores 1 (the bias score counts that); a model whose Rh rises too
steeply with MAP scores low. ILAMB's relationship score, exp(−‖m − o‖/‖o‖), compares the
absolute curves and so mostly re-scores the bias; it is given as ``absolute_response_score``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def quantile_edges(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin edges at the 0, 1/n, …, 1 quantiles of the finite values of ``x`` (repeated
    edges, from ties, merged)."""
    v = np.asarray(x, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.array([])
    return np.unique(np.quantile(v, np.linspace(0.0, 1.0, int(n_bins) + 1)))


def binned(y: np.ndarray, x: np.ndarray, edges: np.ndarray) -> pd.DataFrame:
    """Per bin of ``x``: bin, lower, upper, x_mean, mean, sd and n_cells of ``y`` over the
    cells where both are finite (NaN mean and sd in an empty bin)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    x = np.asarray(x, dtype=np.float64).ravel()
    edges = np.asarray(edges, dtype=np.float64)
    n_bins = max(edges.size - 1, 0)
    ok = np.isfinite(x) & np.isfinite(y) & (x >= edges[0]) & (x <= edges[-1]) \
        if n_bins else np.zeros(x.shape, bool)
    idx = np.clip(np.searchsorted(edges, x[ok], side="right") - 1, 0, n_bins - 1)
    yv, xv = y[ok], x[ok]
    n = np.bincount(idx, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(idx, yv, n_bins) / n
        sd = np.sqrt(np.maximum(np.bincount(idx, yv**2, n_bins) / n - mean**2, 0.0))
        x_mean = np.bincount(idx, xv, n_bins) / n
    return pd.DataFrame({"bin": np.arange(n_bins), "lower": edges[:-1], "upper": edges[1:],
                         "x_mean": x_mean, "mean": mean, "sd": sd,
                         "n_cells": n.astype(int)})


def _common(model: np.ndarray, observed: np.ndarray, counts: np.ndarray):
    m, o, n = (np.asarray(a, dtype=np.float64) for a in (model, observed, counts))
    ok = np.isfinite(m) & np.isfinite(o) & (n > 0)
    return m[ok], o[ok], n[ok]


def response_score(model: np.ndarray, observed: np.ndarray, counts: np.ndarray) -> float:
    """S = exp(−ε) of the curves' relative shapes (module docstring); NaN when fewer than
    two bins are shared or a curve's mean is not positive."""
    m, o, n = _common(model, observed, counts)
    if m.size < 2:
        return float("nan")
    o_bar, m_bar = np.sum(n * o) / n.sum(), np.sum(n * m) / n.sum()
    if not (o_bar > 0 and m_bar > 0):
        return float("nan")
    spread = np.sqrt(np.sum(n * (o / o_bar - 1.0) ** 2))
    if spread == 0:
        return float("nan")
    return float(np.exp(-np.sqrt(np.sum(n * (m / m_bar - o / o_bar) ** 2)) / spread))


def absolute_response_score(model: np.ndarray, observed: np.ndarray,
                            counts: np.ndarray) -> float:
    """ILAMB's form on the absolute curves: exp(−√(Σ n (m − o)²) / √(Σ n o²))."""
    m, o, n = _common(model, observed, counts)
    if m.size == 0 or not np.any(o):
        return float("nan")
    return float(np.exp(-np.sqrt(np.sum(n * (m - o) ** 2)) / np.sqrt(np.sum(n * o**2))))


__all__ = ["absolute_response_score", "binned", "quantile_edges", "response_score"]
