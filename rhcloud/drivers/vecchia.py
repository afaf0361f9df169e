"""Vecchia approximation of the GLS likelihood for fields too large for a dense Cholesky.

The joint density of the errors is approximated by a product of conditionals, each cell
given its ``m`` nearest cells among those earlier in a random ordering (Vecchia 1988;
Guinness 2018, *Technometrics* 60):

``p(e) ~ prod_i p(e_i | e_N(i))``,  ``e_i | e_N(i) ~ N(b_i^T e_N(i), sigma^2 d_i)``.

This defines a sparse inverse Cholesky factor ``U`` (``C^-1 ~ U U^T``), so the whitening
``z = U^T [X y]`` and ``log|C| ~ sum log d_i`` replace the dense ``L^-1 [X y]`` and
``2 sum log L_ii``, and the profiled (RE)ML likelihood keeps exactly the form of
:mod:`rhcloud.drivers.gls` (beta and sigma profiled out). With ``m`` >= n - 1 it is the exact
likelihood. Each evaluation factorizes ``n`` small ``(m+1) x (m+1)`` blocks (the
neighbours, then the cell) in batches: O(n m^3) time and O(n m) memory, no n x n matrix.

Distances: ``chordal`` and ``great-circle`` (km; neighbours are found on the chordal
distance, which orders pairs as the great-circle distance does) or ``lonlat`` (degrees).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ._blas import blas_threads
from .correlation import STRUCTURES, canonical, rho_inplace
from .distances import EARTH_RADIUS_KM, pairwise
from .gls import GLSFit, Memo, Profile, _fit_gls, fit_gls, fit_table, profile_from_whitened

log = logging.getLogger(__name__)

DEFAULT_NEIGHBORS = 30
_CHUNK = 2048


def _points(lon: np.ndarray, lat: np.ndarray, metric: str) -> np.ndarray:
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    if metric == "lonlat":
        return np.column_stack([lon, lat])
    if metric not in ("chordal", "great-circle"):
        raise ValueError(f"unknown distance metric {metric!r}")
    lam, phi = np.deg2rad(lon), np.deg2rad(lat)
    return EARTH_RADIUS_KM * np.column_stack([np.cos(phi) * np.cos(lam),
                                              np.cos(phi) * np.sin(lam), np.sin(phi)])


def ordered_neighbors(pts: np.ndarray, m: int) -> np.ndarray:
    """For points in their given order, the (up to) ``m`` nearest earlier points.

    Returns an (n, m) int array, -1 where a point has fewer than ``m`` predecessors. Blocks
    of positions ``[s, 2s)`` query a k-d tree of the points before ``s`` and one of the block
    itself (keeping earlier positions only), which finds the nearest predecessors except,
    rarely, some inside the block beyond its ``2m + 1`` nearest; any set of predecessors
    gives a valid approximation.
    """
    n = len(pts)
    nbr = np.full((n, m), -1, dtype=np.int64)
    first = min(n, 2 * m + 2)
    for i in range(1, first):  # brute force at the start
        d = np.linalg.norm(pts[:i] - pts[i], axis=1)
        k = min(m, i)
        nbr[i, :k] = np.argsort(d, kind="stable")[:k]
    s = first
    while s < n:
        e = min(2 * s, n)
        k1 = min(m, s)
        d1, i1 = cKDTree(pts[:s]).query(pts[s:e], k=k1)
        d1 = d1.reshape(e - s, k1)
        i1 = i1.reshape(e - s, k1)
        kb = min(2 * m + 1, e - s)
        d2, i2 = cKDTree(pts[s:e]).query(pts[s:e], k=kb)
        d2 = d2.reshape(e - s, kb)
        i2 = i2.reshape(e - s, kb) + s
        pos = np.arange(s, e)[:, None]
        d2 = np.where(i2 < pos, d2, np.inf)
        dd = np.concatenate([d1, d2], axis=1)
        ii = np.concatenate([i1, i2], axis=1)
        order = np.argsort(dd, axis=1, kind="stable")[:, :m]
        take_d = np.take_along_axis(dd, order, axis=1)
        take_i = np.take_along_axis(ii, order, axis=1)
        nbr[s:e] = np.where(np.isfinite(take_d), take_i, -1)
        s = e
    return nbr


class VecchiaLikelihood:
    """Profiled GLS log-likelihood under the Vecchia approximation.

    Same interface as :class:`rhcloud.drivers.gls.GLSLikelihood` (``profile``, ``loglik``,
    ``n``, ``p``, ``xy``, ``method``, ``n_evals``), plus :meth:`whiten` for other designs
    (the GAMM). ``metric``: ``"chordal"``, ``"great-circle"`` or ``"lonlat"``; ``m``
    neighbours; the ordering is random with ``seed``.
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, lon: np.ndarray, lat: np.ndarray,
                 structure: str, metric: str, method: str = "ML",
                 m: int = DEFAULT_NEIGHBORS, seed: int = 0):
        self.structure = canonical(structure)
        if self.structure == "none":
            raise ValueError("the Vecchia approximation needs a correlation structure")
        self.method = method.upper()
        if self.method not in ("ML", "REML"):
            raise ValueError("method must be 'ML' or 'REML'")
        X = np.asarray(X, np.float64)
        if X.ndim == 1:
            X = X[:, None]
        self.n, self.p = X.shape
        self.xy = np.asfortranarray(np.column_stack([X, np.asarray(y, np.float64)]))
        self.metric = metric
        self.m = int(min(m, self.n - 1))
        self.order = np.random.default_rng(seed).permutation(self.n)
        pts = _points(lon, lat, metric)[self.order]
        self.nbr = ordered_neighbors(pts, self.m)
        self._pts = pts
        self.n_evals = 0
        self.n_evals32 = 0
        self.n_failed = 0
        self._cache: dict[tuple[float, float], Profile | None] = {}
        self._blocks = [self._block_geometry(a, min(self.n, a + _CHUNK))
                        for a in range(0, self.n, _CHUNK)]

    def _dist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = np.sqrt(np.sum((a - b) ** 2, axis=-1))
        if self.metric == "great-circle":
            d = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.minimum(d / (2.0 * EARTH_RADIUS_KM), 1.0))
        return d

    def _block_geometry(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows [a, b): block indices (neighbours then the cell, -1 padded), distances."""
        nb = self.nbr[a:b]
        idx = np.concatenate([nb, np.arange(a, b)[:, None]], axis=1)  # (c, m+1)
        valid = idx >= 0
        p = self._pts[np.where(valid, idx, 0)]
        d = self._dist(p[:, :, None, :], p[:, None, :, :])
        d[~(valid[:, :, None] & valid[:, None, :])] = np.inf  # padded: uncorrelated
        return idx, valid, d

    def whiten(self, range_: float, nugget: float, xy: np.ndarray
               ) -> tuple[np.ndarray, float] | None:
        """``(U^T xy, log|C|)`` for any n-row design in the original row order, or ``None``
        when a block is not positive-definite."""
        xy = np.asarray(xy, np.float64)
        if xy.ndim == 1:
            xy = xy[:, None]
        v = xy[self.order]
        inv_r = 1.0 / range_
        scale = 1.0 - nugget
        with blas_threads(1):  # many small blocks: threads only add overhead
            return self._whiten(v, inv_r, scale)

    def _whiten(self, v: np.ndarray, inv_r: float, scale: float
                ) -> tuple[np.ndarray, float] | None:
        z = np.empty_like(v)
        logdet = 0.0
        k = self.m + 1
        eye = np.eye(k, dtype=bool)
        for (idx, valid, d), a in zip(self._blocks, range(0, self.n, _CHUNK), strict=True):
            c = rho_inplace(self.structure, d * inv_r)
            c *= scale
            c[:, eye] = 1.0
            try:
                chol = np.linalg.cholesky(c)
            except np.linalg.LinAlgError:
                return None
            vb = np.where(valid[:, :, None], v[np.where(valid, idx, 0)], 0.0)  # (c, k, q)
            w = np.linalg.solve(chol, vb)  # forward substitution (L lower-triangular)
            z[a:a + len(idx)] = w[:, -1, :]
            ld = chol[:, -1, -1]
            if not np.all(ld > 0):
                return None
            logdet += 2.0 * float(np.sum(np.log(ld)))
        out = np.empty_like(z)
        out[self.order] = z
        return out, logdet

    def profile(self, range_: float = 1.0, nugget: float = 0.0,
                single: bool = False) -> Profile | None:
        """Profile at (range, nugget) (``single`` is ignored: always float64)."""
        key = (float(range_), float(nugget))
        if key in self._cache:
            return self._cache[key]
        self.n_evals += 1
        w = self.whiten(range_, nugget, self.xy)
        if w is None or not np.all(np.isfinite(w[0])):
            self.n_failed += 1
            prof = None
        else:
            try:
                prof = profile_from_whitened(w[0], w[1], self.method == "REML")
            except np.linalg.LinAlgError:
                prof = None
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = prof
        return prof

    def loglik(self, range_: float = 1.0, nugget: float = 0.0, single: bool = False) -> float:
        """Approximate profiled log-likelihood (``-inf`` if a block is not PD)."""
        prof = self.profile(range_, nugget)
        return -math.inf if prof is None else prof.loglik

    def range_bounds(self) -> tuple[float, float]:
        """Search bounds for the range as :func:`rhcloud.drivers.gls._range_bounds`: a tenth
        of the smallest nearest-neighbour distance to 4 x the largest distance."""
        dd, _ = cKDTree(self._pts).query(self._pts, k=2)
        pos = dd[:, 1][dd[:, 1] > 0]
        dmin = float(pos.min()) if pos.size else 1.0
        if self.metric == "great-circle":
            dmin = 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, dmin / (2.0 * EARTH_RADIUS_KM)))
            dmax = math.pi * EARTH_RADIUS_KM
        elif self.metric == "chordal":
            dmax = 2.0 * EARTH_RADIUS_KM
        else:
            lo, hi = self._pts.min(axis=0), self._pts.max(axis=0)
            dmax = float(np.linalg.norm(hi - lo))
        return dmin * 0.1, dmax * 4.0


def fit_gls_vecchia(y: np.ndarray, X: np.ndarray, lon: np.ndarray, lat: np.ndarray,
                    structure: str, nugget: bool = False, method: str = "ML",
                    coef_names: list[str] | None = None, metric: str = "chordal",
                    neighbors: int = DEFAULT_NEIGHBORS, subsample: int = 1000, seed: int = 0,
                    distance: str = "", n_range: int | None = None,
                    warm: list[tuple[float, float]] | None = None,
                    warm_search: bool = False) -> GLSFit:
    """:func:`rhcloud.drivers.gls.fit_gls` with the Vecchia likelihood on all cells.

    The start comes from exact fits on nested random subsamples (dense distances of at
    most 3,000 cells), then quadratic-model Newton steps on the Vecchia likelihood. Range in
    km (``chordal``, ``great-circle``) or degrees (``lonlat``).
    """
    structure = canonical(structure)
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    if structure == "none":
        return fit_gls(y, X, None, "none", method=method, coef_names=coef_names)
    lik = VecchiaLikelihood(y, X, lon, lat, structure, metric, method, neighbors, seed)

    def sub_dist(idx: np.ndarray) -> np.ndarray:
        return pairwise(lon[idx], lat[idx], metric)

    with blas_threads(1):  # small blocks and subsamples: one BLAS thread is fastest
        fit = _fit_gls(y, X, None, structure, nugget, method, coef_names, subsample, n_range,
                       seed, None, None, distance, False, lik=lik, sub_dist=sub_dist,
                       range_bounds=lik.range_bounds(), warm=warm, warm_search=warm_search)
    fit.extra.update({"likelihood": "vecchia", "neighbors": lik.m})
    fit.message = (fit.message + "; " if fit.message else "") + f"Vecchia, {lik.m} neighbours"
    return fit


def aic_table_vecchia(y: np.ndarray, X: np.ndarray, lon: np.ndarray, lat: np.ndarray,
                      distance_for: dict[str, str],
                      structures: list[str] | tuple[str, ...] = STRUCTURES,
                      nuggets: tuple[bool, ...] = (False, True), method: str = "ML",
                      coef_names: list[str] | None = None, include_none: bool = True,
                      neighbors: int = DEFAULT_NEIGHBORS, memo: Memo | None = None,
                      **kwargs) -> tuple[pd.DataFrame, list[GLSFit]]:
    """:func:`rhcloud.drivers.gls.aic_table` with the Vecchia likelihood (no n x n matrix).

    ``distance_for[structure]`` is the metric of each structure (``great-circle``,
    ``chordal`` or ``lonlat``). The ``none`` row is exact.
    """
    def fit_one(s: str, nug: bool) -> GLSFit:
        metric = distance_for.get(s, "chordal")
        return fit_gls_vecchia(y, X, lon, lat, s, nug, method, coef_names, metric, neighbors,
                               distance=metric, **kwargs)

    return fit_table(y, X, structures, nuggets, method, coef_names, include_none, fit_one,
                     label="GLS (Vecchia)", memo=memo)
