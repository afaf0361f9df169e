"""GAMM with spatially correlated errors, fitted the way ``mgcv::gamm`` does (ML).

Model: ``y = b0 + sum_l a_l [factor == l] + sum_j f_j(x_j) + e``, ``e ~ N(0, sigma^2 C(theta))``
with ``C`` one of nlme's correlation structures (:mod:`rhcloud.drivers.correlation`).

Smooths: cubic B-splines with equally spaced knots and a second-order difference penalty
(P-splines; basis and penalty from :mod:`rhcloud.drivers.pspline`, equal to pygam's). Knots span the data
range widened by 0.1% on each side, which makes the basis identical to mgcv's
``s(x, bs = "ps", k)``. Each smooth is centred (sum over the data = 0, absorbed by QR as in
mgcv) and split, via the eigen-decomposition of its penalty, into an unpenalized fixed part
(the linear trend) and iid random effects ``b_j ~ N(0, tau_j sigma^2 I)``: the smoothing
parameter is the variance component ``tau_j`` (``lambda_j = 1 / tau_j``).

Likelihood: with ``C = L L^T`` everything is whitened by ``L^-1``; then
``V0 = I + Z* T Z*^T`` and the profiled ML log-likelihood is
``-N/2 (log 2 pi + 1 - log N) - N/2 log Q - 1/2 log|C| - 1/2 log|I + T^1/2 Z*^T Z* T^1/2|``
with ``Q = min ||y* - X* beta - Z* b||^2 + b^T T^-1 b``. All of it follows from the Gram
matrix of ``[X* Z* y*]``, so for one correlation parameter vector (one Cholesky) the
maximization over the ``tau_j`` is cheap; the outer maximization is over the correlation
parameters (range, nugget). Posterior covariance, edf and p-values follow mgcv's gamm and
``summary.gam`` (Wood 2013 for smooths, Wald for the factor).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import integrate, stats
from scipy.linalg import lapack
from scipy.optimize import minimize

from ._blas import blas_threads, threads_for
from .correlation import canonical, fill_correlation
from .pspline import b_spline_basis, difference_penalty

LOG2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------- smooths
@dataclass
class Smooth:
    """A centred P-spline smooth of one covariate and its mixed-model split."""

    name: str
    n_splines: int
    edge: tuple[float, float]
    zc: np.ndarray  # k x (k-1): sum-to-zero constraint null space
    s: np.ndarray  # (k-1) x (k-1) penalty in the constrained basis
    t_fixed: np.ndarray  # (k-1) x n_null
    t_rand: np.ndarray  # (k-1) x n_rand (U+ Lambda+^-1/2)

    def basis(self, x: np.ndarray) -> np.ndarray:
        """Constrained basis at ``x`` (n x (k-1))."""
        b = b_spline_basis(np.asarray(x, np.float64), self.edge, self.n_splines, order=3)
        return b @ self.zc

    @property
    def t_full(self) -> np.ndarray:
        """Map from (fixed, random) mixed coefficients to constrained basis coefficients."""
        return np.hstack([self.t_fixed, self.t_rand])


def make_smooth(name: str, x: np.ndarray, n_splines: int = 10, diff_order: int = 2) -> Smooth:
    """Set up a centred cubic P-spline of ``x`` (mgcv ``bs = "ps"`` knots and penalty)."""
    x = np.asarray(x, np.float64)
    lo, hi = float(x.min()), float(x.max())
    pad = 0.001 * (hi - lo)
    edge = (lo - pad, hi + pad)
    b = b_spline_basis(x, edge, n_splines, order=3)
    s_full = difference_penalty(n_splines, diff_order)
    # sum-to-zero constraint absorbed by QR (mgcv's way): columns 2..k of Q
    cvec = b.sum(axis=0)[:, None]
    q, _ = np.linalg.qr(cvec, mode="complete")
    zc = q[:, 1:]
    s = zc.T @ s_full @ zc
    s = 0.5 * (s + s.T)
    ev, u = np.linalg.eigh(s)
    tol = ev.max() * 1e-10
    pos = ev > tol
    t_fixed = u[:, ~pos]
    t_rand = u[:, pos] / np.sqrt(ev[pos])
    return Smooth(name, n_splines, edge, zc, s, t_fixed, t_rand)


# ----------------------------------------------------------------------------- p-values
def psum_chisq_upper(q: float, lam: np.ndarray, df: np.ndarray) -> float:
    """P(sum_i lam_i chi2_{df_i} > q) by Imhof's (1961) inversion formula."""
    lam = np.asarray(lam, np.float64)
    df = np.asarray(df, np.float64)

    def integrand(u: float) -> float:
        if u == 0.0:
            return 0.5 * float(np.sum(df * lam)) - 0.5 * q
        theta = 0.5 * np.sum(df * np.arctan(lam * u)) - 0.5 * q * u
        log_rho = 0.25 * np.sum(df * np.log1p((lam * u) ** 2))
        if log_rho > 700.0:
            return 0.0
        return math.sin(theta) / (u * math.exp(log_rho))

    with warnings.catch_warnings():  # quad may report its subdivision limit on the tail
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        val, _ = integrate.quad(integrand, 0.0, np.inf, limit=1000, epsabs=1e-10, epsrel=1e-8)
    return float(min(1.0, max(0.0, 0.5 + val / math.pi)))


def wood_test(p: np.ndarray, r_x: np.ndarray, v: np.ndarray, rank: float,
              res_df: float) -> tuple[float, float, float]:
    """Wood (2013) test of ``f = X p = 0`` as in mgcv's ``summary.gam`` (p.type 0).

    ``r_x`` is a square-root factor of ``X^T X`` (``X`` the term's whitened design),
    ``v`` the Bayesian covariance of ``p``, ``rank`` the (fractional) term edf. Returns
    (statistic, reference rank, p-value); with ``res_df > 0`` the F-type version.
    """
    vr = r_x @ v @ r_x.T
    vr = 0.5 * (vr + vr.T)
    ev, vec = np.linalg.eigh(vr)
    order = np.argsort(ev)[::-1]
    ev, vec = ev[order], vec[:, order]
    sgn = np.sign(vec[0, :])
    sgn[sgn == 0] = 1
    vec = vec * sgn
    k = max(0, int(math.floor(rank)))
    nu = abs(rank - k)
    k1 = k + 1 if nu > 0 else k
    r_est = int(np.sum(ev > ev.max() * np.finfo(float).eps ** 0.9))
    if r_est < k1:
        k1 = k = r_est
        nu = 0.0
        rank = r_est
    vec = vec[:, :k1].copy()
    if nu > 0 and k > 0:
        if k > 1:
            vec[:, : k - 1] /= np.sqrt(ev[: k - 1])
        b12 = math.sqrt(max(0.0, 0.5 * nu * (1 - nu)))
        bmat = np.array([[1.0, b12], [b12, nu]])
        evm = np.diag(ev[k - 1:k1] ** -0.5)
        bmat = evm @ bmat @ evm
        eb, ub = np.linalg.eigh(bmat)
        rb = ub @ np.diag(np.sqrt(eb)) @ ub.T
        vec1 = vec.copy()
        vec1[:, k - 1:k1] = (rb @ np.diag([-1.0, 1.0]) @ vec[:, k - 1:k1].T).T
        vec[:, k - 1:k1] = (rb @ vec[:, k - 1:k1].T).T
    else:
        if k == 0:
            vec = vec[:, :1] / math.sqrt(ev[0]) if vec.shape[1] else vec
        else:
            vec = vec / np.sqrt(ev[:k])
        vec1 = vec
        if k == 1:
            rank = 1
    rp_ = r_x @ p
    d = float(np.sum((vec.T @ rp_) ** 2))
    d1 = float(np.sum((vec1.T @ rp_) ** 2))
    rank1 = rank
    pval = 2.0
    if nu > 0:
        if k1 == 1:
            val = np.array([1.0])
            rank1 = 1
        else:
            val = np.ones(k1)
            rpn = nu + 1
            val[k - 1] = (rpn + math.sqrt(rpn * (2 - rpn))) / 2
            val[k1 - 1] = rpn - val[k - 1]
        if res_df <= 0:
            pval = 0.5 * (psum_chisq_upper(d, val, np.ones_like(val))
                          + psum_chisq_upper(d1, val, np.ones_like(val)))
        else:
            k0 = max(1, round(res_df))
            dfs = np.r_[np.ones_like(val), k0]
            pval = 0.5 * (psum_chisq_upper(0.0, np.r_[val, -d / k0], dfs)
                          + psum_chisq_upper(0.0, np.r_[val, -d1 / k0], dfs))
    if pval > 1:
        if res_df <= 0:
            pval = 0.5 * (stats.chi2.sf(d, rank1) + stats.chi2.sf(d1, rank1))
        else:
            pval = 0.5 * (stats.f.sf(d / rank1, rank1, res_df) + stats.f.sf(d1 / rank1, rank1, res_df))
    return d, float(rank), float(min(1.0, pval))


# ----------------------------------------------------------------------------- model
@dataclass
class GAMMFit:
    """A fitted GAMM (ML). Effects are in the unit of the response."""

    smooths: list[Smooth]
    factor: str | None
    factor_levels: list[str]
    structure: str
    nugget: bool
    range: float
    nugget_value: float
    sigma: float
    loglik: float
    aic: float
    n: int
    n_params: int
    coef: np.ndarray  # gam parametrization: intercept, factor dummies, smooth coefs
    vp: np.ndarray
    term_index: dict[str, np.ndarray]
    tau: np.ndarray
    terms: pd.DataFrame
    x_range: dict[str, tuple[float, float]]
    seconds: float = 0.0
    n_evals: int = 0
    notes: list[str] = field(default_factory=list)

    def effects(self, n_grid: int = 100) -> pd.DataFrame:
        """Partial effect of each smooth on a grid over its data range, with its SE."""
        rows = []
        for sm in self.smooths:
            lo, hi = self.x_range[sm.name]
            xg = np.linspace(lo, hi, n_grid)
            b = sm.basis(xg)
            idx = self.term_index[sm.name]
            f = b @ self.coef[idx]
            se = np.sqrt(np.einsum("ij,jk,ik->i", b, self.vp[np.ix_(idx, idx)], b))
            rows.append(pd.DataFrame({"term": sm.name, "x": xg, "effect": f, "se": se}))
        return pd.concat(rows, ignore_index=True)

    def predict_term(self, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Partial effect and SE of smooth ``name`` at ``x``."""
        sm = next(s for s in self.smooths if s.name == name)
        b = sm.basis(x)
        idx = self.term_index[name]
        f = b @ self.coef[idx]
        se = np.sqrt(np.einsum("ij,jk,ik->i", b, self.vp[np.ix_(idx, idx)], b))
        return f, se


class _Design:
    """Mixed-model design: fixed [1, factor dummies, smooth null spaces], random parts."""

    def __init__(self, data: pd.DataFrame, smooth: list[str], factor: str | None,
                 n_splines: int):
        n = len(data)
        self.smooths = [make_smooth(c, data[c].to_numpy(np.float64), n_splines) for c in smooth]
        cols_f = [np.ones(n)]
        self.levels: list[str] = []
        if factor is not None:
            lev = pd.Categorical(data[factor].astype(str))
            self.levels = [str(v) for v in lev.categories]
            codes = lev.codes
            for i in range(1, len(self.levels)):
                cols_f.append((codes == i).astype(np.float64))
        self.nsdf = len(cols_f)
        fixed_s, rand_s = [], []
        for sm in self.smooths:
            b = sm.basis(data[sm.name].to_numpy(np.float64))
            fixed_s.append(b @ sm.t_fixed)
            rand_s.append(b @ sm.t_rand)
        self.xf = np.column_stack(cols_f + fixed_s)
        self.z = np.column_stack(rand_s)
        self.p = self.xf.shape[1]
        self.q = self.z.shape[1]
        # index bookkeeping in the mixed vector [fixed | random]
        self.mixed_idx: list[np.ndarray] = []
        self.rand_of: np.ndarray = np.concatenate(
            [np.full(r.shape[1], j) for j, r in enumerate(rand_s)]).astype(int)
        pos_f, pos_r = self.nsdf, self.p
        for j in range(len(self.smooths)):
            nf, nr = fixed_s[j].shape[1], rand_s[j].shape[1]
            self.mixed_idx.append(np.r_[np.arange(pos_f, pos_f + nf), np.arange(pos_r, pos_r + nr)])
            pos_f += nf
            pos_r += nr
        # gam parametrization: [nsdf parametric, smooth 1 (k-1), smooth 2, ...]
        self.gam_idx: list[np.ndarray] = []
        pos = self.nsdf
        for sm in self.smooths:
            kk = sm.zc.shape[1]
            self.gam_idx.append(np.arange(pos, pos + kk))
            pos += kk
        self.n_gam = pos
        tmap = np.zeros((self.n_gam, self.p + self.q))
        tmap[: self.nsdf, : self.nsdf] = np.eye(self.nsdf)
        for j, sm in enumerate(self.smooths):
            tmap[np.ix_(self.gam_idx[j], self.mixed_idx[j])] = sm.t_full
        self.tmap = tmap


class _Profile:
    """Whitened Gram matrix at one correlation parameter vector; inner ML over tau."""

    def __init__(self, gram: np.ndarray, logdet_c: float, n: int, p: int, q: int,
                 rand_of: np.ndarray, m: int):
        self.gram, self.logdet_c, self.n, self.p, self.q = gram, logdet_c, n, p, q
        self.rand_of, self.m = rand_of, m

    def loglik(self, log_tau: np.ndarray, full: bool = False):
        p, q, n = self.p, self.q, self.n
        pq = p + q
        tau = np.exp(np.asarray(log_tau, np.float64))[self.rand_of]
        g = self.gram[:pq, :pq].copy()
        g[np.arange(p, pq), np.arange(p, pq)] += 1.0 / tau
        cg, info = lapack.dpotrf(g, lower=1)
        if info != 0:
            return (-math.inf, None) if full else -math.inf
        rhs = self.gram[:pq, pq]
        z, _ = lapack.dtrtrs(cg, rhs, lower=1)
        qss = float(self.gram[pq, pq] - z @ z)
        if not qss > 0:
            return (-math.inf, None) if full else -math.inf
        st = np.sqrt(tau)
        a = np.eye(q) + st[:, None] * self.gram[p:pq, p:pq] * st[None, :]
        ca, info = lapack.dpotrf(a, lower=1)
        if info != 0:
            return (-math.inf, None) if full else -math.inf
        logdet_a = 2.0 * float(np.sum(np.log(np.diagonal(ca))))
        ll = (-0.5 * n * (LOG2PI + 1.0 - math.log(n)) - 0.5 * n * math.log(qss)
              - 0.5 * self.logdet_c - 0.5 * logdet_a)
        if not full:
            return ll
        return ll, {"chol_g": cg, "qss": qss, "rhs": rhs}

    def optimize_tau(self, start: np.ndarray) -> tuple[np.ndarray, float]:
        def obj(t):
            v = self.loglik(t)
            return 1e300 if not np.isfinite(v) else -v

        best = None
        for x0 in (start, np.zeros(self.m)):
            res = minimize(obj, x0, method="L-BFGS-B", bounds=[(-25.0, 15.0)] * self.m,
                           options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 500})
            if best is None or res.fun < best.fun:
                best = res
        res = minimize(obj, best.x, method="Nelder-Mead",
                       options={"xatol": 1e-7, "fatol": 1e-12, "maxfev": 4000})
        if res.fun < best.fun:
            best = res
        return np.asarray(best.x), -float(best.fun)


def fit_gamm(data: pd.DataFrame, response: str, smooth: list[str], dist: np.ndarray | None,
             structure: str = "rational", nugget: bool = True, factor: str | None = None,
             start: tuple[float, float] | None = None, n_splines: int = 10,
             tight: bool | None = None, whiten=None,
             start_tau: np.ndarray | None = None) -> GAMMFit:
    """Fit ``response ~ s(smooth...) [+ factor]`` by ML with a spatial correlation.

    ``dist``: (n, n) distances in the unit of the range (km or degrees). ``start``:
    (range, nugget) to start from (e.g. the GLS estimates); the correlation parameters are
    then optimized jointly with the smoothing parameters (profiled). ``whiten(range,
    nugget, xy) -> (z, log|C|) | None`` replaces the dense Cholesky (``dist`` then unused;
    e.g. :meth:`rhcloud.drivers.vecchia.VecchiaLikelihood.whiten`; ``start`` required).
    ``start_tau``: log smoothing variances to start the inner ML from (e.g. another GAMM's
    ``log(tau)`` with the same smooths).
    """
    t0 = time.perf_counter()
    structure = canonical(structure)
    data = data.reset_index(drop=True)
    n = len(data)
    des = _Design(data, smooth, factor, n_splines)
    m = len(des.smooths)
    y = data[response].to_numpy(np.float64)
    xy = np.asfortranarray(np.column_stack([des.xf, des.z, y]))
    work = None if (structure == "none" or whiten is not None) else np.empty_like(dist, order="C")
    state = {"log_tau": np.zeros(m) if start_tau is None else np.asarray(start_tau, float),
             "evals": 0}
    tight = n <= 3000 if tight is None else tight

    def profile(range_: float, nug: float) -> _Profile | None:
        state["evals"] += 1
        if structure == "none":
            z, logdet = xy, 0.0
        elif whiten is not None:
            w = whiten(range_, nug, xy)
            if w is None:
                return None
            z, logdet = w
        else:
            fill_correlation(structure, dist, range_, nug, out=work)
            chol, info = lapack.dpotrf(work.T, lower=1, overwrite_a=1, clean=0)
            if info != 0:
                return None
            z, info = lapack.dtrtrs(chol, xy, lower=1)
            logdet = 2.0 * float(np.sum(np.log(np.diagonal(chol))))
        return _Profile(z.T @ z, logdet, n, des.p, des.q, des.rand_of, m)

    # every evaluated point's profile (a (p+q+1)^2 Gram matrix) is kept: the optimum's is
    # then not factorized again
    cache: dict[tuple, tuple[float, np.ndarray, _Profile | None]] = {}

    def outer(x: np.ndarray) -> float:
        key = tuple(np.round(x, 12))
        if key in cache:
            return -cache[key][0]
        r = math.exp(x[0])
        v = 1.0 / (1.0 + math.exp(-x[1])) if nugget else 0.0
        prof = profile(r, v)
        if prof is None:
            cache[key] = (-math.inf, state["log_tau"], None)
            return 1e300
        lt, ll = prof.optimize_tau(state["log_tau"])
        cache[key] = (ll, lt, prof)
        if np.isfinite(ll):
            state["log_tau"] = lt
        return -ll if np.isfinite(ll) else 1e300

    with blas_threads(threads_for(n)):
        if structure == "none":
            x_hat = np.zeros(0)
        else:
            r0, v0 = start if start is not None else (float(np.median(dist[dist > 0])) / 5, 0.2)
            v0 = min(max(v0, 1e-3), 0.95)
            x0 = np.array([math.log(r0)] + ([math.log(v0 / (1 - v0))] if nugget else []))
            if not tight and start is not None:
                # a large problem started from its GLS fit: quadratic-model Newton steps
                # that reuse every evaluation (each one a Cholesky of C) instead of a
                # simplex; the optimum's values are computed as always below
                from .gls import _model_search

                bounds = [(x0[0] - 3.0, x0[0] + 3.0)] + ([(-12.0, 12.0)] if nugget else [])
                x_hat = _model_search(outer, x0, bounds, h=0.1, tol=2e-4, h_conv=0.01,
                                      max_evals=40).x
            elif len(x0) == 1:
                from scipy.optimize import minimize_scalar

                res = minimize_scalar(lambda t: outer(np.array([t])), method="bounded",
                                      bounds=(x0[0] - 2.0, x0[0] + 2.0),
                                      options={"xatol": 1e-7 if tight else 1e-4})
                x_hat = np.array([res.x])
            else:
                simplex = np.vstack([x0, x0 + [0.2, 0.0], x0 + [0.0, 0.3]])
                res = minimize(outer, x0, method="Nelder-Mead",
                               options={"initial_simplex": simplex,
                                        "xatol": 1e-7 if tight else 1e-4,
                                        "fatol": 1e-10 if tight else 1e-6,
                                        "maxfev": 600 if tight else 80})
                x_hat = np.asarray(res.x)
                if tight:  # polish: restart the simplex
                    simplex = np.vstack([x_hat, x_hat + [0.02, 0.0], x_hat + [0.0, 0.03]])
                    res2 = minimize(outer, x_hat, method="Nelder-Mead",
                                    options={"initial_simplex": simplex, "xatol": 1e-8,
                                             "fatol": 1e-11, "maxfev": 400})
                    if res2.fun <= res.fun:
                        x_hat = np.asarray(res2.x)
        r_hat = math.exp(x_hat[0]) if structure != "none" else math.nan
        v_hat = (1.0 / (1.0 + math.exp(-x_hat[1]))) if (nugget and structure != "none") else 0.0
        hit = cache.get(tuple(np.round(x_hat, 12)))
        if hit is not None and hit[2] is not None:
            prof, lt0 = hit[2], hit[1]
        else:
            prof, lt0 = profile(r_hat if structure != "none" else 1.0, v_hat), state["log_tau"]
        lt, _ = prof.optimize_tau(lt0)
        ll, parts = prof.loglik(lt, full=True)
    return _summarize(des, prof, lt, ll, parts, data, structure, nugget, r_hat, v_hat, factor,
                      t0, state["evals"])


def _summarize(des: _Design, prof: _Profile, log_tau: np.ndarray, ll: float, parts: dict,
               data: pd.DataFrame, structure: str, nugget: bool, r_hat: float, v_hat: float,
               factor: str | None, t0: float, n_evals: int) -> GAMMFit:
    n, p, q = prof.n, des.p, des.q
    pq = p + q
    cg = parts["chol_g"]
    sigma2 = parts["qss"] / n
    ginv = lapack.dpotri(cg, lower=1)[0]
    ginv = np.tril(ginv) + np.tril(ginv, -1).T
    beta_mixed = ginv @ parts["rhs"]
    gram = prof.gram[:pq, :pq]
    edf_mixed = np.einsum("ij,ji->i", ginv, gram)
    vp_mixed = sigma2 * ginv * n / (n - des.nsdf)
    tmap = des.tmap
    coef = tmap @ beta_mixed
    vp = tmap @ vp_mixed @ tmap.T
    res_df = n - float(np.sum(edf_mixed))
    rows = []
    term_index: dict[str, np.ndarray] = {}
    for j, sm in enumerate(des.smooths):
        mi = des.mixed_idx[j]
        gi = des.gam_idx[j]
        term_index[sm.name] = gi
        edf = float(np.sum(edf_mixed[mi]))
        # whitened gam-parametrization Gram of the term: T^-T G_mixed T^-1
        tinv = np.linalg.inv(sm.t_full)
        gg = tinv.T @ prof.gram[np.ix_(mi, mi)] @ tinv
        r_x = np.linalg.cholesky(sigma2 * 0.5 * (gg + gg.T)).T
        stat, ref_df, pval = wood_test(coef[gi], r_x, vp[np.ix_(gi, gi)],
                                       min(len(gi), edf), res_df)
        rows.append({"term": f"s({sm.name})", "edf": edf, "ref_df": ref_df,
                     "stat": stat / ref_df, "p_value": pval})
    if factor is not None and des.nsdf > 1:
        fi = np.arange(1, des.nsdf)
        b = coef[fi]
        v = vp[np.ix_(fi, fi)]
        ev, u = np.linalg.eigh(v)
        keep = ev > ev.max() * np.finfo(float).eps ** 0.5
        chi = float(np.sum((u[:, keep].T @ b) ** 2 / ev[keep]))
        k = int(keep.sum())
        rows.append({"term": factor, "edf": float(k), "ref_df": float(k), "stat": chi / k,
                     "p_value": float(stats.f.sf(chi / k, k, res_df))})
    terms = pd.DataFrame(rows)
    k_corr = 0 if structure == "none" else (2 if nugget else 1)
    npar = p + len(des.smooths) + k_corr + 1
    x_range = {sm.name: (float(data[sm.name].min()), float(data[sm.name].max()))
               for sm in des.smooths}
    term_index["(Intercept)"] = np.array([0])
    return GAMMFit(des.smooths, factor, des.levels, structure, nugget, r_hat, v_hat,
                   math.sqrt(sigma2), ll, -2 * ll + 2 * npar, n, npar, coef, vp, term_index,
                   np.exp(log_tau), terms, x_range, time.perf_counter() - t0, n_evals)


@dataclass
class GAMMSelection:
    """The GAMM kept by the paper's factor rule, with both candidate fits."""

    fit: GAMMFit
    with_factor: GAMMFit | None
    without_factor: GAMMFit | None
    factor_dropped: bool
    decision: str


def fit_gamm_select(data: pd.DataFrame, response: str, smooth: list[str],
                    dist: np.ndarray | None, factor: str | None = None, alpha: float = 0.05,
                    **kwargs) -> GAMMSelection:
    """Fit without the factor, then with it (started from the first: :func:`after`); drop
    the factor when its p-value > ``alpha`` and AIC is lower without it."""
    without_f = fit_gamm(data, response, smooth, dist, **kwargs)
    if factor is None:
        return GAMMSelection(without_f, None, without_f, False, "no factor term")
    with_f = fit_gamm(data, response, smooth, dist, factor=factor,
                      **{**kwargs, **after(without_f)})
    return select_factor(with_f, without_f, factor, alpha)


def after(fit: GAMMFit) -> dict:
    """:func:`fit_gamm` arguments that start a GAMM of the same smooths (e.g. with the factor
    added) from ``fit``'s optimum: its range, nugget and smoothing variances. The paper-size
    median residual's GAMM with lithology took 26 evaluations from the GLS fit (to
    -31658.090861) and 15 from the GAMM without lithology (to -31658.090791). A first
    design smaller than 0.1 (0.01: 11 evaluations there) left the search, with its steps
    within 3 designs, far short where the factor moves the nugget (simulated: nugget 0.49
    without the factor, 0.24 with it; 8.6 logLik short after 40 evaluations)."""
    if fit.structure == "none":
        return {"start_tau": np.log(fit.tau)}
    return {"start": (fit.range, fit.nugget_value), "start_tau": np.log(fit.tau)}


def select_factor(with_f: GAMMFit, without_f: GAMMFit, factor: str,
                  alpha: float = 0.05) -> GAMMSelection:
    """The paper's rule on the two fits (made anywhere, e.g. as two Dask tasks): drop the
    factor when its p-value > ``alpha`` and the AIC is lower without it."""
    row = with_f.terms.loc[with_f.terms.term == factor]
    pval = float(row.p_value.iloc[0]) if len(row) else math.nan
    drop = bool(pval > alpha and without_f.aic < with_f.aic)
    decision = (f"{factor}: p = {pval:.4g}, AIC with = {with_f.aic:.3f}, "
                f"without = {without_f.aic:.3f}: {'dropped' if drop else 'kept'}")
    kept = without_f if drop else with_f
    kept.notes.append(decision)
    return GAMMSelection(kept, with_f, without_f, drop, decision)
