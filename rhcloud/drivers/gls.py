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
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.linalg import lapack
from scipy.optimize import minimize, minimize_scalar

from ._blas import blas_threads, threads_for
from .correlation import STRUCTURES, canonical, fill_correlation, rho

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


def _whiten_profile(chol: np.ndarray | None, xy: np.ndarray, reml: bool,
                    single: bool = False) -> Profile:
    if chol is None:
        z = xy
        logdet = 0.0
    else:
        if single:
            z, info = lapack.strtrs(chol, np.asfortranarray(xy, dtype=np.float32), lower=1)
            z = z.astype(np.float64)
        else:
            z, info = lapack.dtrtrs(chol, xy, lower=1)
        if info != 0 or not np.all(np.isfinite(z)):
            raise np.linalg.LinAlgError("triangular solve failed")
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(chol).astype(np.float64))))
    return profile_from_whitened(z, logdet, reml)


def profile_from_whitened(z: np.ndarray, logdet: float, reml: bool) -> Profile:
    """Profile from the whitened ``[X* y*]`` (n x (p+1)) and ``log|C|``."""
    n, p1 = z.shape
    p = p1 - 1
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


FLOAT32_GIVE_UP = 2
"""After this many float32 factorizations in a row fail (C not positive-definite in single
precision), a likelihood evaluates in float64 only."""


class GLSLikelihood:
    """Profiled GLS log-likelihood of one structure, reusing a distance matrix and a buffer.

    ``dist`` (n x n, C order) is never modified; ``work`` (same shape) is overwritten at
    every evaluation (``work32``, float32, at single-precision ones; allocated when first
    needed). Evaluations are counted in ``n_evals`` (float64) and ``n_evals32``.
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, dist: np.ndarray | None, structure: str,
                 method: str = "ML", work: np.ndarray | None = None,
                 work32: np.ndarray | None = None, dmin: float | None = None):
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
        self.work32 = work32
        self._dmin = dmin
        self.n_evals = 0
        self.n_evals32 = 0
        self.n_failed = 0
        self.n_failed32 = 0  # float32 factorizations failed in a row
        self._cache: dict[tuple[float, float, bool], Profile | None] = {}

    def profile(self, range_: float = 1.0, nugget: float = 0.0,
                single: bool = False) -> Profile | None:
        """Profile at (range, nugget); ``None`` when C is not positive-definite.

        ``single``: factorize in float32 (about twice as fast; the log-likelihood is then
        accurate to ~1e-3 at n = 10,000, used only to locate the optimum). A float32
        factorization that fails falls back to float64.
        """
        key = (float(range_), float(nugget), bool(single))
        if key in self._cache:
            return self._cache[key]
        prof = self._profile(range_, nugget, single)
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = prof
        return prof

    def _profile(self, range_: float, nugget: float, single: bool = False) -> Profile | None:
        reml = self.method == "REML"
        if self.structure == "none" or self._is_identity(range_, nugget):
            self.n_evals += 1
            return _whiten_profile(None, self.xy, reml)
        if single and self.n_failed32 < FLOAT32_GIVE_UP:
            self.n_evals32 += 1
            if self.work32 is None or self.work32.shape != self.dist.shape:
                self.work32 = np.empty(self.dist.shape, dtype=np.float32)
            fill_correlation(self.structure, self.dist, range_, nugget, out=self.work32)
            chol, info = lapack.spotrf(self.work32.T, lower=1, overwrite_a=1, clean=0)
            if info == 0:
                try:
                    prof = _whiten_profile(chol, self.xy, reml, single=True)
                    self.n_failed32 = 0
                    return prof
                except np.linalg.LinAlgError:
                    pass
            # not positive-definite in float32: decide in float64; after a few such in a
            # row (a gaussian structure near its optimum, where C is ill-conditioned) the
            # float32 attempt only adds its own cost to every evaluation
            self.n_failed32 += 1
        self.n_evals += 1
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

    def _is_identity(self, range_: float, nugget: float) -> bool:
        """C is exactly the identity in float64 (compact or gaussian correlation with a
        range well below the smallest distance): no factorization needed."""
        if self.structure not in ("spherical", "linear", "gaussian"):
            return False
        if self._dmin is None:
            self._dmin = _min_positive(self.dist)
        s = self._dmin * (1.0 / range_)
        return float(rho(self.structure, np.array([s]))[0]) * (1.0 - nugget) == 0.0

    def loglik(self, range_: float = 1.0, nugget: float = 0.0, single: bool = False) -> float:
        """Profiled log-likelihood (``-inf`` if C is not positive-definite)."""
        prof = self.profile(range_, nugget, single)
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


FitOne = Callable[[str, bool], GLSFit]  # (structure, nugget) -> fit
Memo = Callable[[str, bool, FitOne], GLSFit]  # (structure, nugget, fit_one) -> fit


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
                      lik.n_evals + lik.n_evals32, time.perf_counter() - t0,
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
                  lik.n_evals + lik.n_evals32, time.perf_counter() - t0, message, distance,
                  {"n_evals32": lik.n_evals32})


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


def _quad_design(d: np.ndarray) -> np.ndarray:
    """Columns of the quadratic model in the offsets ``d`` (m x dim)."""
    if d.shape[1] == 1:
        return np.column_stack([np.ones(len(d)), d[:, 0], 0.5 * d[:, 0] ** 2])
    return np.column_stack([np.ones(len(d)), d[:, 0], d[:, 1], 0.5 * d[:, 0] ** 2,
                            0.5 * d[:, 1] ** 2, d[:, 0] * d[:, 1]])


def _unpack_quad(coef: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    if dim == 1:
        return coef[1:2], np.array([[coef[2]]])
    return coef[1:3], np.array([[coef[3], coef[5]], [coef[5], coef[4]]])


@dataclass
class SearchResult:
    """Outcome of :func:`_model_search`."""

    x: np.ndarray
    f: float
    hess: np.ndarray | None  # Hessian of the last quadratic model (None if not convex)
    n_evals: int
    h: float


def _model_search(obj, x0: np.ndarray, bounds: list[tuple[float, float]], h: float = 0.1,
                  tol: float = 2e-4, h_min: float | None = None, h_conv: float | None = None,
                  max_evals: int = 60, stop_at_lower: int | None = None) -> SearchResult:
    """Derivative-free Newton steps on quadratic models that reuse earlier evaluations.

    Every evaluated point is kept. At each iteration the quadratic model (3 coefficients in
    1-D, 6 in 2-D) is fitted by least squares to the evaluated points within ``2.5 h`` of
    the best point; only when they do not determine it (too few, or badly placed) are
    stencil points ``x +- h e_i`` (and ``x + h (e_1 + e_2)``) added, one at a time. The
    step goes to the model's minimum within a trust radius ``3 h`` (Newton when the model
    is convex, else the best model value on a polar grid); ``h`` follows the step length
    (never below ``h_min``, e.g. above the noise level of a float32 objective). Converged
    when the step is below ``tol`` on a design of scale ``h_conv`` (default
    ``max(4 tol, h_min)``); the model's optimum is then evaluated. Near the optimum this
    costs about one new evaluation per iteration plus the initial and final designs.
    ``stop_at_lower``: a coordinate whose lower bound, once active, ends the search (a
    nugget at its bound when the nested fit is known: the table reports that one).
    """
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    dim = len(bounds)
    h_min = 0.0 if h_min is None else h_min
    h_conv = max(4 * tol, h_min) if h_conv is None else max(h_conv, h_min)
    need = 3 if dim == 1 else 6
    xs: list[np.ndarray] = []
    fs: list[float] = []

    def ev(x: np.ndarray) -> tuple[np.ndarray, float]:
        x = np.clip(x, lo, hi)
        for xi, fi in zip(xs, fs, strict=True):
            if np.all(np.abs(xi - x) < 1e-12):
                return xi, fi
        f = float(obj(x))
        xs.append(x)
        fs.append(f)
        return x, f

    def poised(idx: list[int], x_b: np.ndarray) -> bool:
        if len(idx) < need:
            return False
        a = _quad_design((np.array([xs[i] for i in idx]) - x_b) / h)
        sv = np.linalg.svd(a, compute_uv=False)
        return bool(sv[-1] > 1e-3 * sv[0])

    x_b, f_b = ev(np.asarray(x0, float))
    hess = None
    while len(xs) < max_evals:
        i_b = int(np.argmin(fs))
        x_b, f_b = xs[i_b], fs[i_b]
        # the local design: earlier points near x_b, completed by stencil points
        stencil = []
        for i in range(dim):
            for sgn in (1.0, -1.0):
                p_ = x_b.copy()
                p_[i] += sgn * h
                if p_[i] > hi[i] or p_[i] < lo[i]:  # one-sided at a bound
                    p_[i] = x_b[i] - 2 * sgn * h
                stencil.append(np.clip(p_, lo, hi))
        if dim == 2:
            sx = np.where(x_b + h > hi, -1.0, 1.0)
            stencil.append(np.clip(x_b + h * sx, lo, hi))
            stencil.append(np.clip(x_b - h * sx, lo, hi))

        def local(x_b=x_b, h=h) -> list[int]:
            return [i for i in range(len(xs))
                    if fs[i] < 1e299 and np.linalg.norm(xs[i] - x_b) <= 2.5 * h * (1 + 1e-9)]

        idx = local()
        while not poised(idx, x_b) and stencil and len(xs) < max_evals:
            pts = np.array([xs[i] for i in idx]) if idx else x_b[None, :]
            gaps = [float(np.min(np.linalg.norm(pts - c, axis=1))) for c in stencil]
            j = int(np.argmax(gaps))
            cand = stencil.pop(j)
            if gaps[j] < 0.3 * h:
                continue
            ev(cand)
            idx = local()
        if fs[int(np.argmin(fs))] < f_b and not np.array_equal(xs[int(np.argmin(fs))], x_b):
            continue  # a design point is better: re-centre there
        if not poised(idx, x_b):  # non-finite values around: shrink
            h *= 0.5
            hess = None
            if h < tol:
                break
            continue
        d = np.array([xs[i] for i in idx]) - x_b
        v = np.array([fs[i] for i in idx])
        coef, *_ = np.linalg.lstsq(_quad_design(d), v, rcond=None)
        g, hm = _unpack_quad(coef, dim)
        scale = np.max(np.abs(v - f_b)) if len(v) else 0.0
        if scale < 1e-9 * max(1.0, abs(f_b)):
            break  # flat (e.g. the identity limit of a compact correlation): nothing to gain
        # a bound is active where the model's descent direction leaves the box there (a
        # nugget at its lower bound: the profile is flat in logit space, so its 2-D model is
        # never convex and the search explored until max_evals); the step is then Newton's on
        # the free coordinates alone (gradient projection); all active: a KKT corner
        active = ((x_b <= lo + 1e-12) & (g > 0)) | ((x_b >= hi - 1e-12) & (g < 0))
        if stop_at_lower is not None and active[stop_at_lower] and (
                x_b[stop_at_lower] <= lo[stop_at_lower] + 1e-12):
            break
        free = ~active if active.any() else np.ones(dim, bool)
        if not free.any():
            if h <= h_conv * (1 + 1e-9):
                break
            h = h_conv  # confirm the corner on a small design
            continue
        hm_f = hm[np.ix_(free, free)]
        step = None
        if np.all(np.linalg.eigvalsh(hm_f) > 0):
            hess = hm
            step = np.zeros(dim)
            step[free] = -np.linalg.solve(hm_f, g[free])
            if np.linalg.norm(step) > 3 * h:
                step = None
        else:
            hess = None
        if step is None:  # the model's minimum within the trust radius, on a polar grid
            if dim == 1:
                cands = np.linspace(-3 * h, 3 * h, 61)[:, None]
            else:
                ang = np.linspace(0, 2 * np.pi, 48, endpoint=False)
                rad = np.array([0.5, 1.0, 2.0, 3.0]) * h
                cands = np.array([[r * np.cos(t), r * np.sin(t)] for r in rad for t in ang])
            mvals = _quad_design(cands) @ coef
            step = cands[int(np.argmin(mvals))]
        x_new = np.clip(x_b + step, lo, hi)
        step = x_new - x_b
        slen = float(np.linalg.norm(step))
        pred = float(coef[0] - (_quad_design(step[None, :]) @ coef)[0])
        if slen < tol:
            if hess is None:
                break
            if h <= h_conv * (1 + 1e-9):
                if slen > 1e-12:
                    ev(x_new)  # the model's optimum, more accurate than the design points
                break
            h = h_conv  # confirm the tiny step on a small design
            continue
        _, f_new = ev(x_new)
        improved = f_new < f_b
        if hess is None:  # not convex: explore more widely when the step helped
            if improved:
                h = min(2 * h, 1.0)
            elif h_min > 0 and h <= h_min * (1 + 1e-9):
                break  # at the noise floor of the objective
            else:
                h = max(0.5 * h, h_min)
        elif not improved or (f_b - f_new) < 0.25 * pred:
            if not improved and h <= h_conv * (1 + 1e-9):
                break  # the model on the smallest design cannot improve: converged
            h = max(0.5 * min(h, max(slen, h_conv)), h_min)  # model poor at this scale
        else:  # keep earlier points in the design while the steps are large
            h = max(min(h, 4 * slen), h_conv)
        if h < tol and hess is None:
            break
    i_b = int(np.argmin(fs))
    return SearchResult(xs[i_b], fs[i_b], hess, len(xs), h)


POLISH_GAIN = 1e-7
"""The float64 Newton steps of :func:`_polish` stop when the quadratic model predicts less
log-likelihood than this from a further step."""


def _central(obj, x: np.ndarray, f: float, h: float, lo: np.ndarray, hi: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Gradient and diagonal curvature of ``obj`` at ``x`` by central differences of step
    ``h`` (three-point one-sided ones against a bound), and the signed offsets ``s_i`` that
    point inside the bounds (the cross term's direction); ``None`` when a difference point
    is not positive-definite."""
    dim = len(x)
    g, curv, sign = np.zeros(dim), np.zeros(dim), np.ones(dim)

    def at(i: int, t: float) -> float:
        p_ = x.copy()
        p_[i] += t
        return float(obj(p_))

    for i in range(dim):
        if lo[i] <= x[i] - h and x[i] + h <= hi[i]:
            fp, fm = at(i, h), at(i, -h)
            if max(fp, fm) >= 1e299:
                return None
            g[i] = (fp - fm) / (2 * h)
            curv[i] = (fp - 2 * f + fm) / h**2
        else:  # against a bound: f, f(x + s h), f(x + 2 s h)
            sign[i] = -1.0 if x[i] + h > hi[i] else 1.0
            f1, f2 = at(i, sign[i] * h), at(i, 2 * sign[i] * h)
            if max(f1, f2) >= 1e299:
                return None
            g[i] = sign[i] * (-3 * f + 4 * f1 - f2) / (2 * h)
            curv[i] = (f - 2 * f1 + f2) / h**2
    return g, curv, sign


def _polish(obj, res: SearchResult, bounds: list[tuple[float, float]], h: float = 0.01,
            max_steps: int = 4, gain_tol: float = POLISH_GAIN
            ) -> tuple[np.ndarray, float, float]:
    """Newton steps in float64 from the float32 search's optimum.

    ``obj`` is the float64 objective (minimized). At every point the gradient and the
    Hessian's diagonal come from central differences (step ``h`` at the start, ``h / 3``
    after the first step: the fixed point is where the float64 gradient vanishes, not
    where a float32 or forward-difference model's does); in 2-D the cross term from one
    more point at the start and from the secant condition of the gradients of successive
    points afterwards. Steps (at most ``max_steps``, each at most 0.1 long, halved once when
    they overshoot) are taken while the model predicts a gain above ``gain_tol``, or, from
    the second step, until what the steps' observed contraction leaves is below it (the
    differences at the last point are then not made). Returns
    the best point, its float64 value and the gain the last model still predicts there
    (``inf`` when no model could be made: a difference point not positive-definite, or a
    float64 curvature that is not positive, e.g. at a kink). It does not use the float32
    search's model: its curvature was up to 40 % off, and where no convex model was left
    (the paper-size mean residual's rational + nugget) the search's end stood 0.1 logLik
    below the float64 optimum.
    """
    x = np.asarray(res.x, float)
    f = float(obj(x))
    if f >= 1e299:
        return x, f, math.inf
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    d = _central(obj, x, f, h, lo, hi)
    if d is None or not np.all(d[1] > 0):
        return x, f, math.inf
    g, curv, sign = d
    hess = np.diag(curv)
    if len(x) == 2:  # f(x + s1 h e1 + s2 h e2): the forward cross difference
        p_ = x + h * sign
        f12 = float(obj(p_))
        if f12 >= 1e299:
            return x, f, math.inf
        f1 = float(obj(x + np.array([h * sign[0], 0.0])))
        f2 = float(obj(x + np.array([0.0, h * sign[1]])))
        h12 = (f12 - f1 - f2 + f) / (sign[0] * sign[1] * h**2)
        # kept positive-definite: |H12| below sqrt(H11 H22)
        lim = 0.99 * math.sqrt(curv[0] * curv[1])
        hess[0, 1] = hess[1, 0] = min(max(h12, -lim), lim)
    gain = math.inf
    last = None  # what the previous step gained
    for k in range(max_steps + 1):
        step = -np.linalg.solve(hess, g)
        nrm = float(np.linalg.norm(step))
        if nrm > 0.1:
            step *= 0.1 / nrm
        x1 = np.clip(x + step, lo, hi)
        step = x1 - x
        gain = float(-(g @ step + 0.5 * step @ hess @ step))
        if gain <= gain_tol or k == max_steps:
            break
        f1 = float(obj(x1))
        halved = f1 >= f
        if halved:  # the model overshot (along a ridge of range and nugget): half the step
            x1 = np.clip(x + 0.5 * step, lo, hi)
            step = x1 - x
            f1 = float(obj(x1))
            if f1 >= f:  # wrong at this scale (e.g. a kinked profile): stop here
                break
        made = f - f1
        # a full step that made at least half of what the model predicted, and less than
        # the step before it
        if last is not None and not halved and 0.5 * gain <= made < last:
            # the steps contract by rho = made / last (the Hessian is not exact, so
            # linearly: the paper-size mean residual's rational + nugget gained 1.8e-2,
            # 3.3e-4, 5.0e-6): further steps would gain about made rho / (1 - rho) in
            # all; below gain_tol the differences that would confirm it are not made
            rho = made / last
            rest = made * rho / (1.0 - rho)
            if rest <= gain_tol:
                x, f, gain = x1, f1, rest
                break
        last = made
        d1 = _central(obj, x1, f1, h / 3, lo, hi)
        if d1 is None:
            x, f, gain = x1, f1, math.inf
            break
        g1, curv1, _ = d1
        if np.all(curv1 > 0):
            new = np.diag(curv1)
            if len(x) == 2:
                # the cross term from the secant condition H step = g1 - g on both rows
                y = g1 - g
                s1, s2 = step
                if s1 * s1 + s2 * s2 > 0:
                    h12 = (s2 * (y[0] - curv1[0] * s1) + s1 * (y[1] - curv1[1] * s2)) / (
                        s1 * s1 + s2 * s2)
                else:
                    h12 = hess[0, 1]
                lim = 0.99 * math.sqrt(curv1[0] * curv1[1])
                new[0, 1] = new[1, 0] = min(max(h12, -lim), lim)
            hess = new
        x, f, g = x1, f1, g1
    return x, f, max(gain, 0.0)


SINGLE_MIN_N = 4000
"""From this many cells the full-size search runs on float32 factorizations (then a float64
polish); below, float64 throughout."""

MID_SUBSAMPLE = 3000
"""Size of the second, finer subsample fit that starts the full-size search (n > 3 x this
/ 1.5 x ``subsample``)."""


def fit_gls(y: np.ndarray, X: np.ndarray, dist: np.ndarray | None, structure: str,
            nugget: bool = False, method: str = "ML", coef_names: list[str] | None = None,
            subsample: int = 1000, n_range: int | None = None, seed: int = 0,
            work: np.ndarray | None = None, start: tuple[float, float] | None = None,
            distance: str = "", coarse: bool = False, single: bool | None = None,
            work32: np.ndarray | None = None, dmin: float | None = None,
            warm: list[tuple[float, float]] | None = None,
            warm_search: bool = False) -> GLSFit:
    """Maximize the exact (RE)ML likelihood over range (and nugget) of one structure.

    Small problems (n <= ``subsample``): a grid of starts (log-spaced ranges, dense for
    spherical and linear whose profile has many local maxima, times nuggets), a tight
    Nelder-Mead (bounded Brent in 1-D) from each of the best three local maxima of the grid,
    then a restarted polish of the best. Larger problems: a coarse version of that search on
    a random subsample of ``min(subsample, max(300, n // 3))`` cells, refined by quadratic
    model steps on a nested subsample of ``min(3000, n // 3)`` cells (when that is at least
    1.5 times larger), gives the start; then derivative-free Newton steps on quadratic
    models that reuse earlier evaluations (:func:`_model_search`) on all cells. From
    ``SINGLE_MIN_N`` cells (``single=None``; ``True``/``False`` force it) that search
    factorizes in float32 and ends with a float64 Newton step (:func:`_polish`): the
    reported log-likelihood, coefficients and SEs are always float64. The identity limit is
    compared when the search ends below the independent-errors likelihood. ``start`` =
    (range, nugget) skips the search. Range in the unit of ``dist``; returns a
    :class:`GLSFit`.

    ``warm``: (range, nugget) pairs of earlier fits of a closely related problem (the same
    structure on another residual field of the same cells, or the structure without nugget)
    start a large problem (n > ``subsample``): the full-size search starts from the one of
    highest likelihood (with ``warm_search``, the subsample searches' start competes too;
    without, they are not made), then proceeds exactly as from a subsample start (float32
    search, float64 polish). Small problems (the grid search) ignore it.
    """
    n_all = len(np.asarray(y))
    with blas_threads(threads_for(n_all)):
        return _fit_gls(y, X, dist, structure, nugget, method, coef_names, subsample, n_range,
                        seed, work, start, distance, coarse, single, work32, dmin, warm=warm,
                        warm_search=warm_search)


def _min_positive(dist: np.ndarray) -> float:
    """Smallest positive entry of a distance matrix (by blocks of rows)."""
    best = math.inf
    for a in range(0, dist.shape[0], 1024):
        blk = dist[a:a + 1024]
        pos = blk[blk > 0]
        if pos.size:
            best = min(best, float(pos.min()))
    return best


def _best_start(obj, starts: list[np.ndarray]) -> np.ndarray:
    """The start with the highest likelihood (each evaluated once; the search reuses the
    value), the first one when none is positive-definite."""
    vals = [obj(a) for a in starts]
    i = int(np.argmin(vals))
    return starts[i] if vals[i] < 1e299 else starts[0]


def _first_feasible(obj, starts: list[np.ndarray]) -> np.ndarray:
    """The first start if its correlation matrix is positive-definite, else the best of the
    others (corLin's PD region shrinks as cells are added, so a subsample's optimum may
    not be PD on all cells)."""
    if obj(starts[0]) < 1e299 or len(starts) == 1:
        return starts[0]
    vals = [obj(a) for a in starts[1:]]
    i = int(np.argmin(vals))
    return starts[1 + i] if vals[i] < 1e299 else starts[0]


def _subsample_start(y, X, sub_dist, structure, nugget, method, n_range, seed, subsample,
                     bounds) -> tuple[np.ndarray, list[np.ndarray], str]:
    """Start of the full-size search from nested random subsamples (see :func:`fit_gls`)."""
    y = np.asarray(y)
    n = len(y)
    perm = np.random.default_rng(seed).permutation(n)
    m1 = min(subsample, max(300, n // 3))
    idx1 = np.sort(perm[:m1])
    sub1 = fit_gls(y[idx1], X[idx1], sub_dist(idx1), structure, nugget, method,
                   subsample=m1, n_range=n_range, coarse=True)
    if np.isfinite(sub1.loglik):
        x1 = np.array([math.log(sub1.range)] + ([_logit(sub1.nugget_value)] if nugget else []))
    else:
        x1 = np.array([0.5 * (bounds[0][0] + bounds[0][1])] + ([0.0] if nugget else []))
    others = [np.array([math.log(r)] + ([_logit(v)] if nugget else []))
              for r, v in sub1.extra.get("candidates", [])]
    # without a nugget the range stands in for micro-scale variance and shrinks with the
    # cell spacing, which scales as (cells)^-1/2
    slope = 0.0 if nugget else -0.5
    m2 = min(MID_SUBSAMPLE, n // 3)
    msg = f"start from a {m1}-cell subsample fit"
    x_sub, m_sub = x1, m1
    if m2 >= 1.5 * m1:
        idx2 = np.sort(perm[:m2])
        d2 = sub_dist(idx2)
        lik2 = GLSLikelihood(y[idx2], X[idx2], d2, structure, method)
        lo2, hi2 = _range_bounds(d2)
        b2 = [(math.log(lo2), math.log(hi2))] + ([(_NUG_LO, _NUG_HI)] if nugget else [])

        def obj2(x: np.ndarray) -> float:
            ll = lik2.loglik(math.exp(x[0]), _expit(x[1]) if nugget else 0.0)
            return 1e300 if not np.isfinite(ll) else -ll

        lo2_, hi2_ = [b[0] for b in b2], [b[1] for b in b2]
        starts = []
        for x in [x1, *others]:
            x = x.copy()
            x[0] += slope * math.log(m2 / m1)
            starts.append(np.clip(x, lo2_, hi2_))
        with blas_threads(threads_for(m2)):
            x_start = _first_feasible(obj2, starts)
            res2 = _model_search(obj2, x_start, b2,
                                 h=0.15 if structure in ("spherical", "linear") else 0.1,
                                 tol=1e-3, max_evals=40)
            ll_none = _whiten_profile(None, lik2.xy, lik2.method == "REML").loglik
            x2 = res2.x
            if res2.f > -ll_none:  # below independence: the identity limit
                x2 = np.array([b2[0][0]] + ([_NUG_LO] if nugget else []))
        if not nugget and x1[0] > bounds[0][0] + 1e-9 and x2[0] > b2[0][0] + 1e-9:
            slope = min(0.0, max(-1.0, (x2[0] - x1[0]) / math.log(m2 / m1)))
        x_sub, m_sub = x2, m2
        msg = f"start from {m1}- and {m2}-cell subsample fits"
        del d2, lik2
    x0 = x_sub.copy()
    x0[0] += slope * math.log(n / m_sub)
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    alt = []
    for x in others:
        x = x.copy()
        x[0] += slope * math.log(n / m1)
        x = np.clip(x, lo, hi)
        if np.linalg.norm(x - x0) > 0.05 and all(np.linalg.norm(x - a) > 0.05 for a in alt):
            alt.append(x)
    return np.clip(x0, lo, hi), alt, msg


def _warm_start(warm, nugget: bool, bounds) -> tuple[np.ndarray, list[np.ndarray]]:
    """Search starts from (range, nugget) pairs of earlier fits (see :func:`fit_gls`)."""
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    xs: list[np.ndarray] = []
    for r, v in warm:
        if not (np.isfinite(r) and r > 0):
            continue
        x = [math.log(r)]
        if nugget:
            v = v if np.isfinite(v) else 0.0
            x.append(_logit(min(max(v, WARM_NUGGET_MIN), 0.999)))
        x = np.clip(np.array(x), lo, hi)
        if all(np.linalg.norm(x - a) > 1e-9 for a in xs):
            xs.append(x)
    return (xs[0], xs[1:]) if xs else (None, [])


WARM_NUGGET_MIN = 1.0 / (1.0 + math.exp(-_NUG_LO))
"""A warm start's nugget is at least the search's lower bound: a fit without nugget (or a
nugget fit at its boundary) starts the nugget search at the nested model itself, whose
likelihood is then the least the search can end with. (A start at a nugget of 0.01 instead
ended 17.6 below the nested model on the demo world's mean residual at 2,149 cells, where
the optimum is at nugget -> 0.)"""


def _fit_gls(y, X, dist, structure, nugget, method, coef_names, subsample, n_range, seed, work,
             start, distance, coarse, single=None, work32=None, dmin=None, lik=None,
             sub_dist=None, range_bounds=None, warm=None, warm_search=False) -> GLSFit:
    """The search of :func:`fit_gls`; ``lik`` (with ``sub_dist(idx)``, the dense distances
    of a subsample, and ``range_bounds``) replaces the exact likelihood, e.g. by
    :class:`rhcloud.drivers.vecchia.VecchiaLikelihood`."""
    t0 = time.perf_counter()
    structure = canonical(structure)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    coef_names = coef_names or [f"x{i}" for i in range(X.shape[1])]
    if lik is None:
        lik = GLSLikelihood(y, X, dist, structure, method, work, work32, dmin=dmin)
    if sub_dist is None:
        def sub_dist(idx):
            return dist[np.ix_(idx, idx)]
    if structure == "none":
        return _finish(lik, "none", False, math.nan, 0.0, coef_names, t0, distance=distance)
    lo, hi = range_bounds if range_bounds is not None else _range_bounds(dist)
    bounds = [(math.log(lo), math.log(hi))] + ([(_NUG_LO, _NUG_HI)] if nugget else [])
    compact = structure in ("spherical", "linear")

    def unpack(x: np.ndarray) -> tuple[float, float]:
        return math.exp(x[0]), (_expit(x[1]) if nugget else 0.0)

    def obj(x: np.ndarray) -> float:
        r, v = unpack(x)
        ll = lik.loglik(r, v)
        return 1e300 if not np.isfinite(ll) else -ll

    def obj32(x: np.ndarray) -> float:
        r, v = unpack(x)
        ll = lik.loglik(r, v, single=True)
        return 1e300 if not np.isfinite(ll) else -ll

    n = lik.n
    message = ""
    extra: dict = {}
    if start is not None:
        x_best = np.array([math.log(start[0])] + ([_logit(start[1])] if nugget else []))
        x_best, f_best = _optimize(obj, x_best, bounds, tight=True)
        x_best, f_best = _optimize(obj, x_best, bounds, tight=True, step=0.02)
    elif n <= subsample:
        found: list = []
        x_best, f_best = _search_small(obj, bounds, nugget, compact, n_range, coarse, found)
        found.sort(key=lambda t: t[1])
        extra["candidates"] = [unpack(x) for x, f in found if f < 1e299]
    else:
        x0, alt = _warm_start(warm or [], nugget, bounds)
        use32 = (n >= SINGLE_MIN_N) if single is None else bool(single)
        # a gaussian without nugget (exact likelihood): the worst-conditioned C of all (its
        # spectrum decays faster than exponentially) and the sharpest profile
        gauss0 = structure == "gaussian" and not nugget and isinstance(lik, GLSLikelihood)
        # not for corLin: its small nuggets make C ill-conditioned and float32 too noisy;
        # nor for gauss0: there a float32 factorization that succeeds can be 200 logLik off
        # (paper-size mean residual, range 65.2 km: -41080.1 in float32 against -40872.7),
        # and the search ended 1.24 below the float64 optimum
        use32 = (use32 and isinstance(lik, GLSLikelihood) and structure != "linear"
                 and not gauss0)
        h0 = 0.15 if compact else 0.1
        obj_s = obj32 if use32 else obj
        if x0 is not None:
            extra["warm"] = [list(map(float, w)) for w in warm]
            starts = [x0, *alt]
            message = f"warm start: the best of {len(starts)} earlier fits' optima"
            if warm_search:  # and the subsample searches' start
                xs, alt_s, msg = _subsample_start(y, X, sub_dist, structure, nugget, method,
                                                  n_range, seed, subsample, bounds)
                starts += [_first_feasible(obj_s, [xs, *alt_s])]
                message = f"{msg}, and {len(starts) - 1} earlier fits' optima: the best"
            x0 = _best_start(obj_s, starts)
        else:
            x0, alt, message = _subsample_start(y, X, sub_dist, structure, nugget, method,
                                                n_range, seed, subsample, bounds)
            x0 = _first_feasible(obj_s, [x0, *alt])
        if use32:
            # float32 objective: its noise (~1e-3 at n = 10,000) sets the smallest design;
            # spherical and linear profiles are only once differentiable (kinks where the
            # range crosses a distance): a coarser smallest design for them
            # with the nested fit (nugget 0) made at full size, a nugget search that meets
            # its lower bound ends there: the table reports the nested fit (nested_floor),
            # and following the bound only re-solves it in float32 (the paper-size median's
            # exponential + nugget: 8 of its 13 float32 evaluations)
            nested = nugget and any(v == 0.0 for _, v in (warm or []))
            res = _model_search(obj32, x0, bounds, h=h0, tol=0.01 if compact else 5e-3,
                                h_min=0.06 if compact else 0.03,
                                max_evals=30 if len(bounds) == 1 else 45,
                                stop_at_lower=1 if nested else None)
            if nugget and res.x[1] <= bounds[1][0] + 1e-9:
                # at the nugget's lower bound: the nested fit without nugget is at least as
                # good (the table reports it, :func:`nested_floor`); no Newton steps
                x_best, f_best, gain = res.x, obj(res.x), math.inf
            else:
                x_best, f_best, gain = _polish(obj, res, bounds, h=0.03 if compact else 0.01)
            # what the last float64 model still predicts (None: no model was made)
            extra["polish_gain"] = gain if math.isfinite(gain) else None
            message += "; float32 search, float64 polish"
        elif n >= SINGLE_MIN_N and gauss0:
            # its profile is so sharp (curvature ~5e4 in log range at n = 7,458) that
            # quadratic models fitted over 0.01-0.03 in log range stopped short of the
            # optimum (-42726.09 and -42716.67 against -42712.07): a float64 1-D search by
            # Brent's method within e^±0.5 of the start
            lo_, hi_ = max(bounds[0][0], x0[0] - 0.5), min(bounds[0][1], x0[0] + 0.5)
            res = minimize_scalar(lambda t: obj(np.array([t])), bounds=(lo_, hi_),
                                  method="bounded", options={"xatol": 1e-4})
            x_best, f_best = np.array([float(res.x)]), float(res.fun)
        elif n >= SINGLE_MIN_N:  # large corLin or Vecchia fit, float64 (kinked: coarser)
            res = _model_search(obj, x0, bounds, h=h0, tol=2e-3, h_conv=0.03, max_evals=30)
            x_best, f_best = res.x, res.f
        else:
            res = _model_search(obj, x0, bounds, h=h0, tol=2e-4, h_conv=0.01, max_evals=60)
            x_best, f_best = res.x, res.f
        # the identity limit (range below the cell spacing) is a candidate when the search
        # ended below the independent-errors likelihood (computed without a Cholesky)
        ll_none = _whiten_profile(None, lik.xy, lik.method == "REML").loglik
        if f_best > -ll_none:
            x_id = np.array([bounds[0][0]] + ([_NUG_LO] if nugget else []))
            f_id = obj(x_id)
            if f_id < f_best:
                x_best, f_best = x_id, f_id
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
    fit = _finish(lik, structure, nugget, r_hat, v_hat, coef_names, t0, message,
                  converged=pd_ok, pd_ok=pd_ok, distance=distance)
    fit.extra.update(extra)
    return fit


def _search_small(obj, bounds, nugget: bool, compact: bool, n_range: int | None,
                  coarse: bool = False, found: list | None = None) -> tuple[np.ndarray, float]:
    k = n_range or ((30 if compact else 12) if coarse else (60 if compact else 20))
    rgrid = np.linspace(bounds[0][0], bounds[0][1], k)
    nug = (0.05, 0.25, 0.5, 0.8) if coarse else (0.02, 0.1, 0.25, 0.45, 0.7, 0.9)
    ngrid = np.array([_logit(v) for v in nug]) if nugget else None
    if nugget:
        vals = np.array([[obj(np.array([r, v])) for v in ngrid] for r in rgrid])
    else:
        vals = np.array([obj(np.array([r])) for r in rgrid])
    all_maxima = _local_maxima(-vals)
    maxima = all_maxima[: (2 if coarse else 3)]
    if found is not None:  # other local maxima of the grid: fallback starts
        for idx in all_maxima[len(maxima):6]:
            found.append((np.array([rgrid[idx[0]]] + ([ngrid[idx[1]]] if nugget else [])),
                          float(vals[idx])))
    if not maxima:
        x0 = np.array([rgrid[k // 2]] + ([0.0] if nugget else []))
        return x0, obj(x0)
    best_x, best_f = None, math.inf
    step = (rgrid[1] - rgrid[0])
    for idx in maxima:
        x0 = np.array([rgrid[idx[0]]] + ([ngrid[idx[1]]] if nugget else []))
        x, f = _optimize(obj, x0, bounds, tight=not coarse, step=step)
        if found is not None:
            found.append((x, f))
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
              distance_for: dict[str, str] | None = None, memo: Memo | None = None,
              **kwargs) -> tuple[pd.DataFrame, list[GLSFit]]:
    """Fit every structure (with/without nugget, plus ``none``) and rank by AIC.

    ``distances`` is one matrix for all structures, or a dict ``{name: matrix}`` with
    ``distance_for[structure] -> name``. One work buffer is shared by all fits. Rows
    whose correlation matrix is not positive-definite at the optimum get NaN AIC and rank
    last. ``memo`` (see :func:`fit_table`) may supply finished fits. Returns the
    ``gls_aic.csv`` table (sorted by AIC) and the fits.
    """
    if isinstance(distances, np.ndarray):
        dmap = {"": distances}
        distance_for = {}
    else:
        dmap = distances
    any_d = next(iter(dmap.values()))
    work = np.empty_like(any_d, order="C")
    work32 = None
    if len(any_d) >= SINGLE_MIN_N and kwargs.get("single", None) is not False:
        work32 = np.empty(any_d.shape, dtype=np.float32)
    dmins: dict[str, float] = {}

    def fit_one(s: str, nug: bool) -> GLSFit:
        name = (distance_for or {}).get(s, next(iter(dmap)))
        if name not in dmins:
            dmins[name] = _min_positive(dmap[name])
        return fit_gls(y, X, dmap[name], s, nug, method, coef_names, work=work, work32=work32,
                       dmin=dmins[name], distance=name, **kwargs)

    return fit_table(y, X, structures, nuggets, method, coef_names, include_none, fit_one,
                     memo=memo)


def fit_table(y: np.ndarray, X: np.ndarray, structures, nuggets: tuple[bool, ...],
              method: str, coef_names: list[str] | None, include_none: bool,
              fit_one: FitOne, label: str = "GLS", memo: Memo | None = None
              ) -> tuple[pd.DataFrame, list[GLSFit]]:
    """The AIC table over ``structures`` × ``nuggets`` (plus the exact ``none`` row), each
    fit made by ``fit_one(structure, nugget)``, or by ``memo(structure, nugget, fit_one)``
    (which may return a stored fit, e.g. :meth:`rhcloud.drivers.fitcache.FitCache.memo`),
    ranked by :func:`rank_fits`."""
    fits: list[GLSFit] = []
    if include_none:
        fits.append(fit_gls(y, X, None, "none", method=method, coef_names=coef_names))
    for s in structures:
        s = canonical(s)
        if s == "none":
            continue
        for nug in nuggets:
            f = memo(s, nug, fit_one) if memo is not None else fit_one(s, nug)
            fits.append(f)
            log.info("%s %s%s: logLik %.4f, range %.5g, nugget %.4g, %d evaluations, %.1f s",
                     label, s, " + nugget" if nug else "", f.loglik, f.range, f.nugget_value,
                     f.n_evals, f.seconds)
    return rank_fits(fits)


def nested_floor(fits: list[GLSFit]) -> list[GLSFit]:
    """A structure with nugget nests the one without (nugget = 0): where its optimizer ended
    below the no-nugget optimum (kinked spherical/linear profiles), report that boundary
    point instead, with the nugget model's own parameter count. Never lowers a logLik."""
    plain = {(f.structure, f.distance): f for f in fits if not f.nugget}
    out = []
    for f in fits:
        base = plain.get((f.structure, f.distance))
        if (f.nugget and base is not None and base.positive_definite
                and np.isfinite(base.loglik)
                and not (np.isfinite(f.loglik) and f.loglik >= base.loglik)):
            f = replace(
                base, nugget=True, nugget_value=0.0, n_params=f.n_params,
                aic=-2 * base.loglik + (f.aic + 2 * f.loglik if np.isfinite(f.loglik)
                                        else 2 * f.n_params),
                bic=-2 * base.loglik + (f.bic + 2 * f.loglik if np.isfinite(f.loglik)
                                        else base.bic + 2 * base.loglik),
                n_evals=f.n_evals, seconds=f.seconds,
                message=f"nugget search ended at logLik {f.loglik:.4f}, below the nested "
                        "no-nugget optimum: the boundary nugget = 0 is reported",
                extra={**base.extra, "floored": True})
        out.append(f)
    return out


def rank_fits(fits: list[GLSFit]) -> tuple[pd.DataFrame, list[GLSFit]]:
    """The ``gls_aic.csv`` table of fits, sorted by AIC (NaN AIC last), and the fits; a
    nugget fit never below its nested no-nugget fit (:func:`nested_floor`)."""
    fits = nested_floor(fits)
    rows = pd.DataFrame([f.row() for f in fits])
    rows["positive_definite"] = [f.positive_definite for f in fits]
    rows["likelihood"] = [f.extra.get("likelihood", "exact") for f in fits]
    order = rows["aic"].fillna(np.inf).argsort(kind="stable")
    rows = rows.iloc[order].reset_index(drop=True)
    fits = [fits[i] for i in order]
    return rows, fits
