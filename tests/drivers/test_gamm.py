"""GAMM: mgcv basis/p-value machinery, parity with mgcv::gamm, planted-structure recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from drivers_helpers import needs_r, run_r, simulate_gamm_case
from scipy import stats

from rhcloud.drivers.distances import lonlat_euclidean
from rhcloud.drivers.gamm import (
    after,
    fit_gamm,
    fit_gamm_select,
    make_smooth,
    psum_chisq_upper,
)
from rhcloud.drivers.gls import fit_gls


def test_smooth_is_centred_and_split():
    x = np.random.default_rng(0).uniform(-3, 5, 200)
    sm = make_smooth("x", x, n_splines=10)
    b = sm.basis(x)
    assert b.shape == (200, 9)
    np.testing.assert_allclose(b.sum(axis=0), 0, atol=1e-10)  # sum-to-zero constraint
    assert sm.t_fixed.shape == (9, 1)  # the linear trend is the null space
    # the random part is an orthonormal reparametrization of the penalty
    np.testing.assert_allclose(sm.t_rand.T @ sm.s @ sm.t_rand, np.eye(8), atol=1e-8)
    lin = b @ sm.t_fixed[:, 0]
    assert abs(np.corrcoef(lin, x)[0, 1]) > 0.999999


def test_imhof_matches_chi2_and_f():
    assert psum_chisq_upper(7.0, np.ones(3), np.ones(3)) == pytest.approx(stats.chi2.sf(7, 3), abs=1e-7)
    # P(chi2_2 / 2 > F * chi2_50 / 50) = F-distribution tail
    f = 2.7
    p = psum_chisq_upper(0.0, np.array([1.0, 1.0, -2 * f / 50]), np.array([1, 1, 50]))
    assert p == pytest.approx(stats.f.sf(f, 2, 50), abs=1e-7)


R_GAMM = r"""
suppressMessages(library(mgcv))
d <- read.csv("case.csv"); d$lith <- factor(d$lith)
g <- gamm(y ~ s(x1, bs = "ps", k = 10) + s(x2, bs = "ps", k = 10) + lith, data = d,
          correlation = corRatio(form = ~lon + lat, nugget = TRUE), method = "ML")
cp <- coef(g$lme$modelStruct$corStruct, unconstrained = FALSE)
s <- summary(g$gam)
cat(sprintf("PAR,%.10g,%.10g,%.10g,%.10g\n", cp[1], cp[2], as.numeric(logLik(g$lme)), AIC(g$lme)))
for (i in 1:2) cat(sprintf("TERM,%s,%.10g,%.10g,%.10g\n", rownames(s$s.table)[i], s$s.table[i, 1],
                           s$s.table[i, 3], s$s.table[i, 4]))
cat(sprintf("TERM,lith,%.10g,%.10g,%.10g\n", s$pTerms.table[1, 1], s$pTerms.table[1, 2],
            s$pTerms.table[1, 3]))
nd <- data.frame(x1 = seq(min(d$x1), max(d$x1), length = 50),
                 x2 = seq(min(d$x2), max(d$x2), length = 50), lith = "a")
pr <- predict(g$gam, nd, type = "terms", se.fit = TRUE)
for (v in c("x1", "x2")) for (j in 1:50) cat(sprintf("EFF,%s,%.10g,%.10g,%.10g\n", v, nd[j, v],
    pr$fit[j, paste0("s(", v, ")")], pr$se.fit[j, paste0("s(", v, ")")]))
"""


@pytest.mark.r
@needs_r
def test_gamm_parity_with_mgcv(tmp_path):
    df = simulate_gamm_case()
    df.to_csv(tmp_path / "case.csv", index=False)
    out = run_r(R_GAMM, tmp_path)
    lines = [ln.split(",") for ln in out.splitlines() if ln[:4] in ("PAR,", "TERM", "EFF,")]
    par = next(ln for ln in lines if ln[0] == "PAR")
    r_range, r_nug, r_ll, r_aic = map(float, par[1:])
    r_terms = {ln[1]: tuple(map(float, ln[2:])) for ln in lines if ln[0] == "TERM"}
    r_eff = pd.DataFrame([ln[1:] for ln in lines if ln[0] == "EFF"],
                         columns=["term", "x", "effect", "se"]).astype(
        {"x": float, "effect": float, "se": float})

    d = lonlat_euclidean(df.lon.to_numpy(), df.lat.to_numpy())
    X = np.column_stack([np.ones(len(df)), df.x1, df.x2])
    g0 = fit_gls(df.y.to_numpy(), X, d, "rational", nugget=True)
    fit = fit_gamm(df, "y", ["x1", "x2"], d, "rational", True, factor="lith",
                   start=(g0.range, g0.nugget_value))
    assert fit.range == pytest.approx(r_range, rel=0.01)
    assert fit.nugget_value == pytest.approx(r_nug, rel=0.01)
    assert fit.loglik >= r_ll - 1e-4  # same model, same likelihood: ours is at least as high
    assert fit.loglik == pytest.approx(r_ll, abs=1e-2)
    assert fit.aic == pytest.approx(r_aic, abs=2e-2)
    terms = fit.terms.set_index("term")
    for name, key in (("s(x1)", "s(x1)"), ("s(x2)", "s(x2)"), ("lith", "lith")):
        edf, stat, pval = r_terms[key]
        assert terms.loc[name, "edf"] == pytest.approx(edf, rel=0.01)
        assert terms.loc[name, "stat"] == pytest.approx(stat, rel=0.02)
        assert (terms.loc[name, "p_value"] < 0.05) == (pval < 0.05)
    assert terms.loc["s(x1)", "p_value"] < 0.05  # clear signal
    assert terms.loc["s(x2)", "p_value"] > 0.05  # pure noise
    assert terms.loc["lith", "p_value"] < 0.05  # planted lithology effect
    for v in ("x1", "x2"):
        e = r_eff[r_eff.term == v]
        f, se = fit.predict_term(v, e.x.to_numpy())
        scale = np.ptp(e.effect.to_numpy()) if v == "x1" else np.ptp(
            e.effect.to_numpy() + 1.96 * e.se.to_numpy()) + 1e-12
        assert np.max(np.abs(f - e.effect.to_numpy())) <= 0.02 * scale, v
        np.testing.assert_allclose(se, e.se.to_numpy(), rtol=0.02)


def test_factor_rule_drops_null_lithology():
    df = simulate_gamm_case(n=250, seed=8, lith_effect=(0.0, 0.0, 0.0))
    d = lonlat_euclidean(df.lon.to_numpy(), df.lat.to_numpy())
    sel = fit_gamm_select(df, "y", ["x1", "x2"], d, factor="lith", structure="rational",
                          nugget=True, start=(5.0, 0.3))
    p = sel.with_factor.terms.set_index("term").loc["lith", "p_value"]
    assert p > 0.05
    assert sel.factor_dropped == (sel.without_factor.aic < sel.with_factor.aic)
    assert sel.factor_dropped
    assert "dropped" in sel.decision
    assert sel.fit is sel.without_factor
    assert "lith" not in set(sel.fit.terms.term)


def test_the_gamm_with_the_factor_starts_from_the_one_without():
    """The quadratic-model search of a large problem (``tight=False``) from the GAMM without
    the factor (:func:`after`; the planted lithology moves the nugget from 0.46 to 0.29)
    reaches the tight simplex search's optimum, with fewer evaluations than from the GLS
    fit, which ends within 2e-4 of it."""
    df = simulate_gamm_case(n=400, seed=3)
    d = lonlat_euclidean(df.lon.to_numpy(), df.lat.to_numpy())
    X = np.column_stack([np.ones(len(df)), df.x1, df.x2])
    g0 = fit_gls(df.y.to_numpy(), X, d, "rational", nugget=True)
    kw = dict(structure="rational", nugget=True, start=(g0.range, g0.nugget_value))
    tight = fit_gamm(df, "y", ["x1", "x2"], d, factor="lith", tight=True, **kw)
    plain = fit_gamm(df, "y", ["x1", "x2"], d, tight=False, **kw)
    from_gls = fit_gamm(df, "y", ["x1", "x2"], d, factor="lith", tight=False, **kw)
    chained = fit_gamm(df, "y", ["x1", "x2"], d, factor="lith", tight=False,
                       **{**kw, **after(plain)})
    assert from_gls.loglik == pytest.approx(tight.loglik, abs=2e-4)
    assert chained.loglik == pytest.approx(tight.loglik, abs=1e-6)
    assert chained.range == pytest.approx(tight.range, rel=1e-3)
    assert chained.n_evals < from_gls.n_evals
    # fit_gamm_select makes the same two fits
    sel = fit_gamm_select(df, "y", ["x1", "x2"], d, factor="lith", tight=False, **kw)
    assert sel.without_factor.loglik == plain.loglik
    assert sel.with_factor.loglik == chained.loglik
