"""Exact Gaussian-likelihood GLS with nlme's spatial correlation structures.

Model: ``y = X beta + e``, ``e ~ N(0, sigma^2 C(range, nugget))`` (see
:mod:`rhcloud.drivers.correlation`). With ``C = L L^T`` (Cholesky), ``X* = L^-1 X``,
``y* = L^-1 y`` and the QR factor ``R`` of ``[X* y*]``, ``beta`` and ``sigma`` are
profiled out and, with ``Nr = N - p`` under REML and ``N`` under ML,

``l = Nr/2 (log Nr - 1 - log 2 pi) - Nr/2 log RSS - 1/2 log|C| [- 1/2 log|X*^T X*|  (REML)]``

which is the value ``nlme::gls`` reports (``glsEstimate``). ``sigma^2 = RSS / Nr``; the
coefficient covariance is ``RSS/(N - p) (X*^T X*)^-1`` under both methods, as in nlme.
AIC counts ``p + k + 1`` parameters (``k`` correlation parameters), BIC uses ``log Nr``.

A failed Cholesky (matrix not positive-definite) is a log-likelihood of ``-inf``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.linalg import lapack
from scipy.optimize import minimize, minimize_scalar

from ._blas import blas_threads, threads_for
from .correlation import STRUCTURES, canonical, fill_correlation

LOG2PI = math.log(2.0 * math.pi)
log = logging.getLogger(__name__)
_NUG_LO, _NUG_HI = -12.0, 12.0  # logit bounds on the nugget


@dataclass
class Profile:
    """Profiled likelihood pieces at one (range, nugget)."""

    loglik: float
    beta: np.ndarray
    rss: float
    logdet_c: float
    r_xx: np.ndarray  # upper-triangular R of whitened X (p x p)


def _whiten_profile(chol: np.ndarray | None, xy: np.ndarray, reml: bool) -> Profile:
    n, p1 = xy.shape
    p = p1 - 1
    if chol is None:
        z = xy
        logdet = 0.0
    else:
        z, info = lapack.dtrtrs(chol, xy, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("triangular solve failed")
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(chol))))
    r = np.linalg.qr(z, mode="r")
    diag = np.abs(np.diagonal(r))
    rss = float(diag[p] ** 2)
    nr = n - p if reml else n
    ll = 0.5 * nr * (math.log(nr) - 1.0 - LOG2PI) - 0.5 * nr * math.log(rss) - 0.5 * logdet
    if reml:
        ll -= float(np.sum(np.log(diag[:p])))
    r_xx = r[:p, :p]
    beta = np.linalg.solve(r_xx, r[:p, p]) if p else np.zeros(0)
    return Profile(ll, beta, rss, logdet, r_xx)


class GLSLikelihood:
    """Profiled GLS log-likelihood of one structure, reusing a distance matrix and a buffer.

    ``dist`` (n x n, C order) is never modified; ``work`` (same shape) is overwritten at
    every evaluation. Evaluations are counted in ``n_evals``.
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, dist: np.ndarray | None, structure: str,
                 method: str = "ML", work: np.ndarray | None = None):
        self.structure = canonical(structure)
        self.method = method.upper()
        if self.method not in ("ML", "REML"):
            raise ValueError("method must be 'ML' or 'REML'")
        y = np.asarray(y, dtype=np.float64)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
        self.xy = np.asfortranarray(np.column_stack([X, y]))
        self.n, self.p = X.shape
        self.dist = dist
        if self.structure != "none":
            if dist is None or dist.shape != (self.n, self.n):
                raise ValueError("dist must be an (n, n) matrix")
            if work is None or work.shape != dist.shape:
                work = np.empty_like(dist, order="C")
        self.work = work
        self.n_evals = 0
        self.n_failed = 0
        self._cache: dict[tuple[float, float], Profile | None] = {}

    def profile(self, range_: float = 1.0, nugget: float = 0.0) -> Profile | None:
        """Profile at (range, nugget); ``None`` when C is not positive-definite."""
        key = (float(range_), float(nugget))
        if key in self._cache:
            return self._cache[key]
        prof = self._profile(range_, nugget)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = prof
        return prof

    def _profile(self, range_: float, nugget: float) -> Profile | None:
        self.n_evals += 1
        reml = self.method == "REML"
        if self.structure == "none":
            return _whiten_profile(None, self.xy, reml)
        fill_correlation(self.structure, self.dist, range_, nugget, out=self.work)
        chol, info = lapack.dpotrf(self.work.T, lower=1, overwrite_a=1, clean=0)
        if info != 0:
            self.n_failed += 1
            return None
        try:
            return _whiten_profile(chol, self.xy, reml)
        except np.linalg.LinAlgError:
            self.n_failed += 1
            return None

    def loglik(self, range_: float = 1.0, nugget: float = 0.0) -> float:
        """Profiled log-likelihood (``-inf`` if C is not positive-definite)."""
        prof = self.profile(range_, nugget)
        return -math.inf if prof is None else prof.loglik


def gls_loglik(y: np.ndarray, X: np.ndarray, dist: np.ndarray | None, structure: str,
               range_: float = 1.0, nugget: float = 0.0, method: str = "ML") -> float:
    """Profiled log-likelihood of a GLS at given correlation parameters (nlme's value)."""
    with blas_threads(threads_for(len(np.asarray(y)))):
        return GLSLikelihood(y, X, dist, structure, method).loglik(range_, nugget)


@dataclass
class GLSFit:
    """One fitted GLS (units of ``range`` are those of the distance matrix)."""

    structure: str
    nugget: bool
    method: str
    coef: np.ndarray
    se: np.ndarray
    coef_names: list[str]
    range: float
    nugget_value: float
    sigma: float
    loglik: float
    aic: float
    bic: float
    n: int
    n_params: int
    positive_definite: bool = True
    converged: bool = True
    n_evals: int = 0
    seconds: float = 0.0
    message: str = ""
    distance: str = ""
    extra: dict = field(default_factory=dict)

    def coef_table(self) -> pd.DataFrame:
        """Coefficients with standard errors, t and two-sided normal p-values."""
        from scipy.stats import norm

        t = self.coef / self.se
        return pd.DataFrame({"estimate": self.coef, "se": self.se, "t": t,
                             "p_value": 2 * norm.sf(np.abs(t))}, index=self.coef_names)

    def row(self) -> dict:
        """The row of ``tables/gls_aic.csv``."""
        return {"structure": self.structure, "nugget": self.nugget, "method": self.method,
                "loglik": self.loglik, "aic": self.aic, "bic": self.bic,
                "range": self.range, "nugget_value": self.nugget_value, "n": self.n}


def _logit(v: float) -> float:
    v = min(max(v, 1e-12), 1 - 1e-12)
    return math.log(v / (1 - v))


def _expit(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def _range_bounds(dist: np.ndarray) -> tuple[float, float]:
    """Search bounds for the range: from a fraction of the nearest-neighbour spacing to a
    few times the largest distance."""
    n = dist.shape[0]
    step = max(1, n // 400)
    sub = dist[::step]
    pos = sub[sub > 0]
    dmin = float(pos.min()) if pos.size else 1.0
    dmax = float(sub.max()) if sub.size else 1.0
    return dmin * 0.1, dmax * 4.0


def _finish(lik: GLSLikelihood, structure: str, nugget: bool, range_: float, nug: float,
            coef_names: list[str], t0: float, message: str = "", converged: bool = True,
            pd_ok: bool = True, distance: str = "") -> GLSFit:
    prof = lik.profile(range_, nug)
    n, p = lik.n, lik.p
    if prof is None:
        nan = math.nan
        return GLSFit(structure, nugget, lik.method, np.full(p, nan), np.full(p, nan),
                      coef_names, range_, nug, nan, -math.inf, nan, nan, n, 0, False, False,
                      lik.n_evals, time.perf_counter() - t0,
                      message or "correlation matrix not positive-definite", distance)
    reml = lik.method == "REML"
    nr = n - p if reml else n
    k = 0 if structure == "none" else (2 if nugget else 1)
    npar = p + k + 1
    xtx_inv = np.linalg.inv(prof.r_xx.T @ prof.r_xx) if p else np.zeros((0, 0))
    se = np.sqrt(np.diag(xtx_inv) * prof.rss / (n - p))
    aic = -2 * prof.loglik + 2 * npar
    bic = -2 * prof.loglik + math.log(nr) * npar
    if not pd_ok:
        aic = bic = math.nan
    return GLSFit(structure, nugget, lik.method, prof.beta, se, coef_names,
                  math.nan if structure == "none" else range_,
                  (nug if nugget else 0.0) if structure != "none" else math.nan,
                  math.sqrt(prof.rss / nr), prof.loglik, aic, bic, n, npar, pd_ok, converged,
                  lik.n_evals, time.perf_counter() - t0, message, distance)


def _local_maxima(values: np.ndarray) -> list[tuple[int, ...]]:
    """Indices of local maxima of a 1-D or 2-D grid (neighbours incl. diagonals)."""
    v = np.where(np.isfinite(values), values, -np.inf)
    out = []
    for idx in np.ndindex(v.shape):
        if not np.isfinite(v[idx]):
            continue
        sl = tuple(slice(max(0, i - 1), i + 2) for i in idx)
        if v[idx] >= v[sl].max():
            out.append(idx)
    out.sort(key=lambda i: -v[i])
    return out


def _optimize(obj, x0: np.ndarray, bounds: list[tuple[float, float]], tight: bool,
              method: str = "Nelder-Mead", step: float = 0.1) -> tuple[np.ndarray, float]:
    x0 = np.clip(np.asarray(x0, float), [b[0] for b in bounds], [b[1] for b in bounds])
    if len(x0) == 1:
        lo = max(bounds[0][0], x0[0] - 4 * step)
        hi = min(bounds[0][1], x0[0] + 4 * step)
        res = minimize_scalar(lambda t: obj(np.array([t])), bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-7 if tight else 1e-3})
        x, f = np.array([res.x]), float(res.fun)
        if f > obj(x0):  # keep the start if it is better
            x, f = x0, obj(x0)
        return x, f
    if method == "L-BFGS-B":
        res = minimize(obj, x0, method="L-BFGS-B", bounds=bounds,
                       options={"eps": 1e-5, "ftol": 1e-11, "gtol": 1e-5, "maxiter": 30})
        return np.asarray(res.x), float(res.fun)
    simplex = np.vstack([x0, x0 + [step, 0.0], x0 + [0.0, step]])
    res = minimize(obj, x0, method="Nelder-Mead", bounds=bounds,
                   options={"initial_simplex": simplex, "xatol": 1e-8 if tight else 1e-3,
                            "fatol": 1e-11 if tight else 1e-5, "maxfev": 2000 if tight else 50})
    return np.asarray(res.x), float(res.fun)


def _quad_search(obj, x0: np.ndarray, bounds: list[tuple[float, float]], h: float = 0.1,
                 tol: float = 2e-4, max_iter: int = 8) -> tuple[np.ndarray, float]:
    """Derivative-free Newton steps on a quadratic model fitted through a small design.

    Each iteration evaluates ``obj`` at ``x`` and ``x +- h e_i`` (plus ``x + h (e_1 + e_2)``
    in 2-D), fits the exact quadratic through those points, and moves to its minimum
    (trust radius ``3 h``); ``h`` shrinks with the step. For the expensive full-size
    likelihood, started near the optimum: about 6 evaluations per iteration in 2-D, 3 in 1-D.
    """
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    x = np.clip(np.asarray(x0, float), lo, hi)
    fx = obj(x)
    dim = x.size
    for _ in range(max_iter):
        e = np.eye(dim) * h
        pts = [x + e[i] for i in range(dim)] + [x - e[i] for i in range(dim)]
        if dim == 2:
            pts.append(x + e[0] + e[1])
        pts = [np.clip(p_, lo, hi) for p_ in pts]
        vals = np.array([obj(p_) for p_ in pts])
        ok = np.all(vals < 1e299) and fx < 1e299
        best_i = int(np.argmin(vals))
        step = None
        if ok:
            d = np.array(pts) - x
            if dim == 1:
                a = np.column_stack([d[:, 0], 0.5 * d[:, 0] ** 2])
            else:
                a = np.column_stack([d[:, 0], d[:, 1], 0.5 * d[:, 0] ** 2, 0.5 * d[:, 1] ** 2,
                                     d[:, 0] * d[:, 1]])
            coef, *_ = np.linalg.lstsq(a, vals - fx, rcond=None)
            if dim == 1:
                g, hess = coef[:1], np.array([[coef[1]]])
            else:
                g = coef[:2]
                hess = np.array([[coef[2], coef[4]], [coef[4], coef[3]]])
            if np.all(np.linalg.eigvalsh(hess) > 0):
                step = -np.linalg.solve(hess, g)
                norm = float(np.linalg.norm(step))
                if norm > 3 * h:
                    step *= 3 * h / norm
        if step is None:  # not convex here: move to the best design point, widen the design
            if vals[best_i] < fx:
                x, fx = pts[best_i], float(vals[best_i])
                h = min(2 * h, 1.0)
                continue
            h *= 0.5
            if h < tol:
                break
            continue
        xn = np.clip(x + step, lo, hi)
        fn = obj(xn)
        cand = [(fn, xn), (float(vals[best_i]), pts[best_i]), (fx, x)]
        fbest, xbest = min(cand, key=lambda t: t[0])
        moved = float(np.linalg.norm(xbest - x))
        x, fx = xbest, fbest
        # converged when the step is small on a design that is itself small (the quadratic
        # model over a wide design can predict a tiny step far from the optimum)
        if float(np.linalg.norm(step)) < tol and h <= 4 * tol:
            break
        h = min(h, max(2 * float(np.linalg.norm(step)), 4 * tol, moved / 2))
    return x, fx


def fit_gls(y: np.ndarray, X: np.ndarray, dist: np.ndarray | None, structure: str,
            nugget: bool = False, method: str = "ML", coef_names: list[str] | None = None,
            subsample: int = 1000, n_range: int | None = None, seed: int = 0,
            work: np.ndarray | None = None, start: tuple[float, float] | None = None,
            distance: str = "", coarse: bool = False) -> GLSFit:
    """Maximize the exact (RE)ML likelihood over range (and nugget) of one structure.

    Small problems (n <= ``subsample``): a grid of starts (log-spaced ranges, dense for
    spherical and linear whose profile has many local maxima, times nuggets), a tight
    Nelder-Mead (bounded Brent in 1-D) from each of the best three local maxima of the grid,
    then a restarted polish of the best. Larger problems: a coarse version of that search on
    a random subsample of ``min(subsample, max(300, n // 3))`` cells gives the start, then
    derivative-free Newton steps on quadratic models (:func:`_quad_search`) on all cells; the
    identity limit is always compared. ``start`` = (range, nugget) skips the search.
    Range in the unit of ``dist``; returns a :class:`GLSFit`.
    """
    n_all = len(np.asarray(y))
    with blas_threads(threads_for(n_all)):
        return _fit_gls(y, X, dist, structure, nugget, method, coef_names, subsample, n_range,
                        seed, work, start, distance, coarse)


def _fit_gls(y, X, dist, structure, nugget, method, coef_names, subsample, n_range, seed, work,
             start, distance, coarse) -> GLSFit:
    t0 = time.perf_counter()
    structure = canonical(structure)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    coef_names = coef_names or [f"x{i}" for i in range(X.shape[1])]
    lik = GLSLikelihood(y, X, dist, structure, method, work)
    if structure == "none":
        return _finish(lik, "none", False, math.nan, 0.0, coef_names, t0, distance=distance)
    lo, hi = _range_bounds(dist)
    bounds = [(math.log(lo), math.log(hi))] + ([(_NUG_LO, _NUG_HI)] if nugget else [])
    compact = structure in ("spherical", "linear")

    def unpack(x: np.ndarray) -> tuple[float, float]:
        return math.exp(x[0]), (_expit(x[1]) if nugget else 0.0)

    def obj(x: np.ndarray) -> float:
        r, v = unpack(x)
        ll = lik.loglik(r, v)
        return 1e300 if not np.isfinite(ll) else -ll

    n = lik.n
    message = ""
    if start is not None:
        x_best = np.array([math.log(start[0])] + ([_logit(start[1])] if nugget else []))
        x_best, f_best = _optimize(obj, x_best, bounds, tight=True)
        x_best, f_best = _optimize(obj, x_best, bounds, tight=True, step=0.02)
    elif n <= subsample:
        x_best, f_best = _search_small(obj, bounds, nugget, compact, n_range, coarse)
    else:
        rng = np.random.default_rng(seed)
        m = min(subsample, max(300, n // 3))
        idx = np.sort(rng.choice(n, size=m, replace=False))
        sub_fit = fit_gls(np.asarray(y)[idx], X[idx], dist[np.ix_(idx, idx)], structure, nugget,
                          method, coef_names, subsample=m, n_range=n_range, coarse=True)
        x0 = np.array([math.log(sub_fit.range)] + ([_logit(sub_fit.nugget_value)] if nugget else []))
        if not nugget:
            # without a nugget the range stands in for micro-scale variance and shrinks with
            # the cell spacing, which scales as (cells)^-1/2
            x0[0] += 0.5 * math.log(m / n)
        if not np.isfinite(sub_fit.loglik):
            x0 = np.array([0.5 * (bounds[0][0] + bounds[0][1])] + ([0.0] if nugget else []))
        big = n > 5000  # each evaluation costs seconds: stop at 1e-3 in the parameters
        x_best, f_best = _quad_search(obj, x0, bounds, h=0.15 if compact else 0.1,
                                      tol=1e-3 if big else 2e-4, max_iter=8)
        # the identity limit (range below the cell spacing) is a candidate when the search
        # ended below the independent-errors likelihood (computed without a Cholesky)
        ll_none = _whiten_profile(None, lik.xy, lik.method == "REML").loglik
        if f_best > -ll_none:
            x_id = np.array([bounds[0][0]] + ([_NUG_LO] if nugget else []))
            f_id = obj(x_id)
            if f_id < f_best:
                x_best, f_best = x_id, f_id
        message = f"start from a {subsample}-cell subsample fit"
    r_hat, v_hat = unpack(x_best)
    pd_ok = f_best < 1e299
    if pd_ok and structure == "linear":
        # at the boundary of the positive-definite region the optimum is not a maximum:
        # flag it (nlme would report a matrix that is not a correlation matrix)
        if not np.isfinite(lik.loglik(r_hat * 1.001, v_hat)):
            pd_ok = False
            message = "optimum on the boundary of the positive-definite region; not reported"
    elif not pd_ok:
        message = "no positive-definite correlation matrix found"
    return _finish(lik, structure, nugget, r_hat, v_hat, coef_names, t0, message,
                   converged=pd_ok, pd_ok=pd_ok, distance=distance)


def _search_small(obj, bounds, nugget: bool, compact: bool, n_range: int | None,
                  coarse: bool = False) -> tuple[np.ndarray, float]:
    k = n_range or ((30 if compact else 12) if coarse else (60 if compact else 20))
    rgrid = np.linspace(bounds[0][0], bounds[0][1], k)
    nug = (0.05, 0.25, 0.5, 0.8) if coarse else (0.02, 0.1, 0.25, 0.45, 0.7, 0.9)
    ngrid = np.array([_logit(v) for v in nug]) if nugget else None
    if nugget:
        vals = np.array([[obj(np.array([r, v])) for v in ngrid] for r in rgrid])
    else:
        vals = np.array([obj(np.array([r])) for r in rgrid])
    maxima = _local_maxima(-vals)[: (2 if coarse else 3)]
    if not maxima:
        x0 = np.array([rgrid[k // 2]] + ([0.0] if nugget else []))
        return x0, obj(x0)
    best_x, best_f = None, math.inf
    step = (rgrid[1] - rgrid[0])
    for idx in maxima:
        x0 = np.array([rgrid[idx[0]]] + ([ngrid[idx[1]]] if nugget else []))
        x, f = _optimize(obj, x0, bounds, tight=not coarse, step=step)
        if f < best_f:
            best_x, best_f = x, f
    if coarse:  # a start for the full-size search: no polish
        return best_x, best_f
    # polish: restart the simplex (Nelder-Mead can stall on a collapsed simplex)
    x, f = _optimize(obj, best_x, bounds, tight=True, step=0.02)
    if f < best_f:
        best_x, best_f = x, f
    return best_x, best_f


def aic_table(y: np.ndarray, X: np.ndarray, distances: dict[str, np.ndarray] | np.ndarray,
              structures: list[str] | tuple[str, ...] = STRUCTURES,
              nuggets: tuple[bool, ...] = (False, True), method: str = "ML",
              coef_names: list[str] | None = None, include_none: bool = True,
              distance_for: dict[str, str] | None = None,
              **kwargs) -> tuple[pd.DataFrame, list[GLSFit]]:
    """Fit every structure (with/without nugget, plus ``none``) and rank by AIC.

    ``distances`` is one matrix for all structures, or a dict ``{name: matrix}`` with
    ``distance_for[structure] -> name``. One work buffer is shared by all fits. Rows
    whose correlation matrix is not positive-definite at the optimum get NaN AIC and rank
    last. Returns the ``gls_aic.csv`` table (sorted by AIC) and the fits.
    """
    if isinstance(distances, np.ndarray):
        dmap = {"": distances}
        distance_for = {}
    else:
        dmap = distances
    any_d = next(iter(dmap.values()))
    work = np.empty_like(any_d, order="C")
    fits: list[GLSFit] = []
    if include_none:
        fits.append(fit_gls(y, X, None, "none", method=method, coef_names=coef_names))
    for s in structures:
        s = canonical(s)
        if s == "none":
            continue
        name = (distance_for or {}).get(s, next(iter(dmap)))
        for nug in nuggets:
            fits.append(fit_gls(y, X, dmap[name], s, nug, method, coef_names, work=work,
                                distance=name, **kwargs))
            f = fits[-1]
            log.info("GLS %s%s: logLik %.4f, range %.5g, nugget %.4g, %d evaluations, %.1f s",
                     s, " + nugget" if nug else "", f.loglik, f.range, f.nugget_value,
                     f.n_evals, f.seconds)
    rows = pd.DataFrame([f.row() for f in fits])
    rows["positive_definite"] = [f.positive_definite for f in fits]
    order = rows["aic"].fillna(np.inf).argsort(kind="stable")
    rows = rows.iloc[order].reset_index(drop=True)
    fits = [fits[i] for i in order]
    return rows, fits
