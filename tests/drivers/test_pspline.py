"""The GAMM's P-spline basis and penalty from scipy's BSpline: equal to pygam's to 1e-12
where pygam is installed (the reference the GAMM's parity with mgcv was built on), and the
properties of a B-spline basis and a difference penalty where it is not."""

from __future__ import annotations

import numpy as np
import pytest

from rhcloud.drivers import pspline

CASES = [(4, 3, (0.0, 1.0)), (10, 3, (-3.2, 41.7)), (20, 3, (250.0, 3300.0)),
         (7, 2, (-1.0, 1.0)), (12, 1, (5.0, 6.0)), (10, 3, (1e-3, 1e-3 + 1e-6))]


def _x(edge, n=2000, seed=0):
    """Points inside the edges, the edges and knots themselves, and points beyond them."""
    lo, hi = edge
    rng = np.random.default_rng(seed)
    span = hi - lo
    inside = rng.uniform(lo, hi, n)
    outside = np.r_[rng.uniform(lo - 0.3 * span, lo, 50), rng.uniform(hi, hi + 0.3 * span, 50)]
    return np.r_[inside, outside, lo, hi, np.linspace(lo, hi, 23)]


@pytest.mark.parametrize(("n_splines", "order", "edge"), CASES)
def test_basis_equals_pygam(n_splines, order, edge):
    utils = pytest.importorskip("pygam.utils")
    x = _x(edge)
    want = utils.b_spline_basis(x, edge_knots=np.array(edge), n_splines=n_splines,
                                spline_order=order, sparse=False, periodic=False,
                                verbose=False)
    got = pspline.b_spline_basis(x, edge, n_splines, order)
    assert got.shape == want.shape == (x.size, n_splines)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_splines", [1, 2, 5, 10, 25])
@pytest.mark.parametrize("diff_order", [1, 2, 3])
def test_penalty_equals_pygam(n_splines, diff_order):
    penalties = pytest.importorskip("pygam.penalties")
    if n_splines <= diff_order and n_splines > 1:
        pytest.skip("no differences of that order")
    want = penalties.derivative(n_splines, np.zeros(n_splines), derivative=diff_order).toarray()
    got = pspline.difference_penalty(n_splines, diff_order)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_smooth_of_the_gamm_equals_the_pygam_built_one():
    """make_smooth (the GAMM's centred, split smooth) from this basis is the one pygam's basis
    and penalty give, built here the same way by hand."""
    utils = pytest.importorskip("pygam.utils")
    penalties = pytest.importorskip("pygam.penalties")
    from rhcloud.drivers.gamm import make_smooth

    x = np.random.default_rng(3).gamma(2.0, 400.0, 1500)
    sm = make_smooth("MAP", x, n_splines=10)
    b = utils.b_spline_basis(x, edge_knots=np.array(sm.edge), n_splines=10, spline_order=3,
                             sparse=False, periodic=False, verbose=False)
    s_full = penalties.derivative(10, np.zeros(10), derivative=2).toarray()
    np.testing.assert_allclose(sm.basis(x), b @ sm.zc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sm.s, sm.zc.T @ s_full @ sm.zc, rtol=0, atol=1e-12)
    # the constraint: every constrained basis column sums to zero over the data
    np.testing.assert_allclose(sm.basis(x).sum(axis=0), 0.0, atol=1e-9)


def test_basis_is_a_partition_of_unity_inside_the_edges():
    x = np.linspace(-2.0, 7.0, 501)
    b = pspline.b_spline_basis(x, (-2.0, 7.0), 10)
    assert b.shape == (501, 10)
    np.testing.assert_allclose(b.sum(axis=1), 1.0, rtol=0, atol=1e-13)
    assert (b >= -1e-15).all()
    # each row has at most order + 1 non-zero functions (local support)
    assert ((b > 1e-15).sum(axis=1) <= 4).all()


def test_basis_reproduces_a_cubic_and_extrapolates_linearly():
    """Cubic B-splines span the cubics on the edges' interval; beyond it every function
    continues with its end value and slope, so the fitted cubic continues as its tangent."""
    edge = (0.0, 10.0)
    x = np.linspace(*edge, 200)
    b = pspline.b_spline_basis(x, edge, 8)
    y = 0.5 - 0.3 * x + 0.02 * x**2 + 0.004 * x**3
    coef, *_ = np.linalg.lstsq(b, y, rcond=None)
    np.testing.assert_allclose(b @ coef, y, rtol=0, atol=1e-10)
    beyond = np.array([12.0, 15.0, -3.0])
    slope_hi = -0.3 + 0.04 * 10 + 0.012 * 100
    slope_lo = -0.3
    want = np.array([y[-1] + slope_hi * 2.0, y[-1] + slope_hi * 5.0, y[0] + slope_lo * -3.0])
    np.testing.assert_allclose(pspline.b_spline_basis(beyond, edge, 8) @ coef, want,
                               rtol=0, atol=1e-9)


def test_penalty_is_the_squared_differences():
    s = pspline.difference_penalty(5, 2)
    np.testing.assert_array_equal(s, [[1, -2, 1, 0, 0], [-2, 5, -4, 1, 0], [1, -4, 6, -4, 1],
                                      [0, 1, -4, 5, -2], [0, 0, 1, -2, 1]])
    beta = np.random.default_rng(1).normal(size=5)
    assert beta @ s @ beta == pytest.approx(np.sum(np.diff(beta, 2) ** 2), rel=1e-12)
    # linear coefficient vectors are unpenalized: the null space of a 2nd-order penalty
    np.testing.assert_allclose(s @ np.arange(5.0), 0.0, atol=1e-12)
    np.testing.assert_allclose(s @ np.ones(5), 0.0, atol=1e-12)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_splines"):
        pspline.b_spline_basis(np.zeros(3), (0, 1), 3)
    with pytest.raises(ValueError, match="1-D"):
        pspline.b_spline_basis(np.zeros((3, 2)), (0, 1), 10)
