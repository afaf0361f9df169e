"""GLS: correlation definitions, likelihood identities, and parity with nlme::gls."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from drivers_helpers import needs_r, run_r, simulate_gls_case

from rhcloud.drivers import correlation as corr
from rhcloud.drivers.distances import (
    EARTH_RADIUS_KM,
    chordal_km,
    great_circle_km,
    lonlat_euclidean,
)
from rhcloud.drivers.gls import aic_table, fit_gls, gls_loglik


def test_correlation_functions_match_nlme_definitions():
    s = np.array([0.0, 0.3, 0.99, 1.0, 1.7])
    np.testing.assert_allclose(corr.rho("exponential", s), np.exp(-s))
    np.testing.assert_allclose(corr.rho("gaussian", s), np.exp(-s**2))
    np.testing.assert_allclose(corr.rho("rational", s), 1 / (1 + s**2))
    sph = np.where(s < 1, 1 - 1.5 * s + 0.5 * s**3, 0.0)
    np.testing.assert_allclose(corr.rho("spherical", s), sph, atol=1e-15)
    np.testing.assert_allclose(corr.rho("linear", s), np.where(s < 1, 1 - s, 0.0), atol=1e-15)
    assert corr.canonical("corRatio") == "rational"


@pytest.mark.parametrize("structure", corr.STRUCTURES)
def test_fill_correlation_in_place_with_nugget(structure):
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(0, 30, 1500), rng.uniform(-20, 20, 1500)
    d = lonlat_euclidean(lon, lat)
    full = corr.fill_correlation(structure, d, 7.0, 0.3, full=True)
    expected = 0.7 * corr.rho(structure, d / 7.0)
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(full, expected, rtol=1e-13, atol=1e-15)
    upper = corr.fill_correlation(structure, d, 7.0, 0.3)  # threaded, upper triangle only
    iu = np.triu_indices(1500)
    np.testing.assert_allclose(upper[iu], expected[iu], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("structure", corr.STRUCTURES)
def test_float32_correlations_hold_no_entry_below_float32_resolution(structure):
    """Entries below 2^-24 (half an ulp of 1 in float32) are 0, so no subnormal reaches the
    single-precision Cholesky; the others are the float64 values to float32 accuracy, and the
    float64 gaussian and exponential matrices hold no subnormal either."""
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(0, 60, 600), rng.uniform(-30, 30, 600)
    d = lonlat_euclidean(lon, lat)
    full64 = corr.fill_correlation(structure, d, 4.0, 0.05, full=True)
    out = np.empty(d.shape, np.float32)
    full32 = corr.fill_correlation(structure, d, 4.0, 0.05, out=out, full=True)
    assert not np.any((full32 > 0) & (full32 < 2.0**-24))
    # float32 arithmetic: a few ulps of 1 absolute (the spherical cubic cancels near s = 1)
    np.testing.assert_allclose(full32, full64, rtol=1e-5, atol=4 * 2.0**-24)
    if structure in ("gaussian", "exponential"):  # the test reaches the threshold
        assert np.any((full64 > 0) & (full64 < 2.0**-24) & (full32 == 0))
    tiny64 = np.finfo(np.float64).tiny
    assert not np.any((full64 > 0) & (full64 < tiny64))


def test_distances():
    lon = np.array([0.0, 1.0, 0.0, 180.0])
    lat = np.array([0.0, 0.0, 90.0, 0.0])
    gc = great_circle_km(lon, lat)
    assert gc[0, 1] == pytest.approx(EARTH_RADIUS_KM * math.pi / 180, rel=1e-12)
    assert gc[0, 2] == pytest.approx(EARTH_RADIUS_KM * math.pi / 2, rel=1e-12)
    assert gc[0, 3] == pytest.approx(EARTH_RADIUS_KM * math.pi, rel=1e-12)
    ch = chordal_km(lon, lat)
    assert ch[0, 3] == pytest.approx(2 * EARTH_RADIUS_KM, rel=1e-12)
    assert np.all(ch <= gc + 1e-9)
    np.testing.assert_allclose(lonlat_euclidean(lon, lat)[1, 2], math.hypot(1, 90))


def test_loglik_matches_statsmodels_gls_at_fixed_correlation():
    df = simulate_gls_case(n=200, seed=3)
    d = lonlat_euclidean(df.lon.to_numpy(), df.lat.to_numpy())
    X = sm.add_constant(df[["x"]].to_numpy())
    c = corr.fill_correlation("exponential", d, 4.0, 0.2, full=True)
    ref = sm.GLS(df.y.to_numpy(), X, sigma=c).fit()
    ours = gls_loglik(df.y.to_numpy(), X, d, "exponential", 4.0, 0.2)
    # statsmodels' llf uses the ML sigma and the same determinant
    assert ours == pytest.approx(ref.llf, abs=1e-9)
    fit = fit_gls(df.y.to_numpy(), X, None, "none")
    assert fit.loglik == pytest.approx(sm.OLS(df.y.to_numpy(), X).fit().llf, abs=1e-9)
    assert fit.aic == pytest.approx(-2 * fit.loglik + 2 * 3)


def test_failed_cholesky_is_minus_inf_and_linear_flagged():
    # corLin on a dense 2-D grid with a long range is not positive-definite
    g = np.arange(12.0)
    lon, lat = (a.ravel() for a in np.meshgrid(g, g))
    d = lonlat_euclidean(lon, lat)
    c = corr.fill_correlation("linear", d, 5.0, 0.0, full=True)
    assert np.linalg.eigvalsh(c).min() < 0
    y = np.random.default_rng(0).normal(size=lon.size)
    assert gls_loglik(y, np.ones((lon.size, 1)), d, "linear", 5.0) == -math.inf


R_GLS = r"""
suppressMessages(library(nlme))
d <- read.csv("case.csv")
out <- NULL
for (s in c("corExp","corGaus","corRatio","corSpher","corLin")) for (nug in c(FALSE, TRUE))
  for (m in c("ML", "REML")) {
  if (m == "REML" && s != "corRatio") next
  f <- try(gls(y ~ x, data = d, correlation = do.call(s, list(form = ~lon + lat, nugget = nug)),
               method = m), silent = TRUE)
  if (inherits(f, "try-error")) next
  cp <- coef(f$modelStruct$corStruct, unconstrained = FALSE)
  se <- sqrt(diag(vcov(f)))
  out <- rbind(out, data.frame(s = s, nugget = nug, method = m, loglik = as.numeric(logLik(f)),
    b0 = coef(f)[1], b1 = coef(f)[2], se0 = se[1], se1 = se[2], range = cp[1],
    nug = if (nug) cp[2] else 0, sigma = f$sigma, aic = AIC(f), bic = BIC(f)))
}
write.csv(out, stdout(), row.names = FALSE)
"""

NAMES = {"corExp": "exponential", "corGaus": "gaussian", "corRatio": "rational",
         "corSpher": "spherical", "corLin": "linear"}
WELL_POSED = {("exponential", False), ("exponential", True), ("gaussian", False),
              ("gaussian", True), ("rational", False), ("rational", True), ("spherical", True)}


@pytest.fixture(scope="module")
def r_gls(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rgls")
    df = simulate_gls_case(n=300, seed=1)
    df.to_csv(tmp / "case.csv", index=False)
    ref = pd.read_csv(io.StringIO(run_r(R_GLS, tmp)))
    ref["structure"] = ref.s.map(NAMES)
    return df, ref


@pytest.mark.r
@needs_r
def test_gls_parity_with_nlme(r_gls):
    df, ref = r_gls
    y = df.y.to_numpy()
    X = sm.add_constant(df[["x"]].to_numpy())
    d = lonlat_euclidean(df.lon.to_numpy(), df.lat.to_numpy())
    assert len(ref[ref.method == "ML"]) >= 8  # R fails on corLin with nugget here
    checked_optimum = 0
    for row in ref.itertuples():
        nug = bool(row.nugget)
        # the likelihood at R's own estimates
        ll = gls_loglik(y, X, d, row.structure, row.range, row.nug, method=row.method)
        assert ll == pytest.approx(row.loglik, abs=1e-8), (row.structure, nug, row.method)
        fit = fit_gls(y, X, d, row.structure, nug, method=row.method)
        assert fit.loglik >= row.loglik - 1e-8, (row.structure, nug)
        if (row.structure, nug) in WELL_POSED:
            checked_optimum += 1
            assert fit.loglik == pytest.approx(row.loglik, abs=1e-6)
            np.testing.assert_allclose(fit.coef, [row.b0, row.b1], atol=1e-5)
            np.testing.assert_allclose(fit.se, [row.se0, row.se1], rtol=1e-4)
            assert fit.range == pytest.approx(row.range, rel=1e-4)
            if nug:
                assert fit.nugget_value == pytest.approx(row.nug, rel=1e-4)
            assert fit.sigma == pytest.approx(row.sigma, rel=1e-4)
            assert fit.aic == pytest.approx(row.aic, abs=1e-5)
            assert fit.bic == pytest.approx(row.bic, abs=1e-5)
    assert checked_optimum >= 8  # 7 ML + REML corRatio


def test_aic_table_ranks_and_recovers_planted_structure():
    df = simulate_gls_case(n=250, seed=7, structure="exponential", range_=5.0, nugget=0.2)
    d = lonlat_euclidean(df.lon.to_numpy(), df.lat.to_numpy())
    X = sm.add_constant(df[["x"]].to_numpy())
    table, fits = aic_table(df.y.to_numpy(), X, d, coef_names=["(Intercept)", "x"])
    assert list(table.columns[:9]) == ["structure", "nugget", "method", "loglik", "aic", "bic",
                                       "range", "nugget_value", "n"]
    assert len(table) == 11
    aic = table.aic.to_numpy()
    finite = aic[np.isfinite(aic)]
    assert np.all(np.diff(finite) >= 0)
    # correlated errors: every spatial structure beats "none" by far
    none_aic = table.loc[table.structure == "none", "aic"].item()
    assert table.aic.iloc[0] < none_aic - 20
    best = fits[0]
    assert best.nugget  # a nugget was planted
    assert best.coef[1] == pytest.approx(0.5, abs=4 * best.se[1])


def test_nugget_fit_never_below_its_nested_fit():
    """A nugget search that ends below the no-nugget optimum (kinked spherical profiles) is
    reported at the boundary nugget = 0, with the nugget model's parameter count."""
    from rhcloud.drivers.gls import GLSFit, rank_fits

    def fit(nugget, loglik, k):
        return GLSFit("spherical", nugget, "ML", np.array([1.0]), np.array([0.1]), ["a"],
                      1900.0 if not nugget else 1880.0, 0.0 if not nugget else 1e-5, 2.0,
                      loglik, -2 * loglik + 2 * k, -2 * loglik + k * np.log(100), 100, k,
                      distance="chordal")

    table, fits = rank_fits([fit(False, -28248.3, 3), fit(True, -28249.7, 4)])
    nug = next(f for f in fits if f.nugget)
    assert nug.loglik == -28248.3 and nug.nugget_value == 0.0 and nug.range == 1900.0
    assert nug.aic == pytest.approx(2 * 28248.3 + 8) and nug.n_params == 4
    assert "boundary" in nug.message
    ok = fit(True, -28240.0, 4)  # a nugget fit above the nested one is kept as it is
    _, fits = rank_fits([fit(False, -28248.3, 3), ok])
    assert ok in fits
