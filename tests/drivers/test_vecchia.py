"""Large-field machinery: the Vecchia approximation, its automatic choice, the float32
search with a float64 polish, and the quadratic-model search that reuses evaluations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from drivers_helpers import planted_grid_world, simulate_gls_case

from rhcloud.drivers import cli
from rhcloud.drivers.api import choose_likelihood, fit_drivers
from rhcloud.drivers.distances import chordal_km, great_circle_km, lonlat_euclidean
from rhcloud.drivers.gls import (
    FLOAT32_GIVE_UP,
    GLSLikelihood,
    SearchResult,
    _model_search,
    _polish,
    fit_gls,
    gls_loglik,
)
from rhcloud.drivers.vecchia import VecchiaLikelihood, fit_gls_vecchia, ordered_neighbors


def _case(n: int, seed: int):
    df = simulate_gls_case(n=n, seed=seed)
    lon, lat = df.lon.to_numpy(), df.lat.to_numpy()
    X = np.column_stack([np.ones(n), df.x.to_numpy()])
    return lon, lat, X, df.y.to_numpy()


@pytest.mark.parametrize("metric,dfun,r", [("lonlat", lonlat_euclidean, 6.0),
                                          ("chordal", chordal_km, 600.0),
                                          ("great-circle", great_circle_km, 600.0)])
@pytest.mark.parametrize("structure", ["exponential", "gaussian", "rational", "spherical"])
def test_vecchia_with_all_predecessors_is_exact(metric, dfun, r, structure):
    lon, lat, X, y = _case(100, 3)
    d = dfun(lon, lat)
    v = VecchiaLikelihood(y, X, lon, lat, structure, metric, m=99)
    reml = VecchiaLikelihood(y, X, lon, lat, structure, metric, "REML", m=99)
    for nug, tol in ((0.0, 1e-6), (0.3, 1e-9)):  # no nugget: ill-conditioned (gaussian)
        assert v.loglik(r, nug) == pytest.approx(gls_loglik(y, X, d, structure, r, nug),
                                                 abs=tol)
        assert reml.loglik(r, nug) == pytest.approx(
            gls_loglik(y, X, d, structure, r, nug, method="REML"), abs=tol)


def test_ordered_neighbors_are_the_nearest_predecessors():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (700, 2))
    m = 8
    nbr = ordered_neighbors(pts, m)
    assert nbr.shape == (700, m)
    assert np.all(nbr[0] == -1) and np.all(nbr[1:, 0] >= 0)
    exact = 0
    for i in range(1, 700):
        got = nbr[i][nbr[i] >= 0]
        assert np.all(got < i)
        d = np.linalg.norm(pts[:i] - pts[i], axis=1)
        want = np.argsort(d, kind="stable")[: min(m, i)]
        assert len(got) == len(want)
        exact += set(got) == set(want)
    assert exact / 699 > 0.97  # the block search rarely misses an in-block neighbour


def test_vecchia_fit_close_to_exact():
    """n = 600, 30 neighbours, rational quadratic + nugget (planted range 6, nugget 0.25):
    measured differences logLik 0.44, range 7%, nugget 0.02, slope 2e-4 (SE 0.03)."""
    lon, lat, X, y = _case(600, 4)
    d = lonlat_euclidean(lon, lat)
    ex = fit_gls(y, X, d, "rational", True, subsample=300)
    ve = fit_gls_vecchia(y, X, lon, lat, "rational", True, metric="lonlat", subsample=300)
    assert ve.extra["likelihood"] == "vecchia"
    assert abs(ve.loglik - ex.loglik) < 1.5
    assert ve.range == pytest.approx(ex.range, rel=0.2)
    assert abs(ve.nugget_value - ex.nugget_value) < 0.05
    assert abs(ve.coef[1] - ex.coef[1]) < 0.1 * ex.se[1]
    np.testing.assert_allclose(ve.se, ex.se, rtol=0.1)


def test_likelihood_chosen_automatically_above_threshold():
    assert choose_likelihood(15000) == "exact"
    assert choose_likelihood(15001) == "vecchia"
    assert choose_likelihood(100, "vecchia") == "vecchia"
    assert choose_likelihood(10**6, "exact") == "exact"
    with pytest.raises(ValueError):
        choose_likelihood(10, "approximate")
    df, _ = planted_grid_world(seed=6)
    df = df.iloc[:220].copy()
    kw = {"smooth": ["MAT"], "structures": ["exponential"], "nuggets": (True,)}
    auto = fit_drivers(df, "residual", vecchia_above=200, **kw)
    assert auto.likelihood == "vecchia"
    assert auto.summary()["likelihood"] == "vecchia"
    assert all(f.extra.get("likelihood") == "vecchia" for f in auto.gls_fits
               if f.structure != "none")
    assert auto.gamm is not None and np.isfinite(auto.gamm.fit.loglik)
    exact = fit_drivers(df, "residual", vecchia_above=1000, **kw)
    assert exact.likelihood == "exact"
    # 220 cells, 30 neighbours: the approximation is close to the exact fit
    assert abs(auto.best.loglik - exact.best.loglik) < 2.0
    assert abs(auto.gamm.fit.loglik - exact.gamm.fit.loglik) < 2.0


def test_cli_likelihood_flag(tmp_path):
    df, _ = planted_grid_world(seed=6)
    csv = tmp_path / "cells.csv"
    df.iloc[:150].to_csv(csv, index=False)
    out = tmp_path / "out"
    args = [str(csv), "--response", "residual", "--structures", "exponential", "--no-nugget",
            "--likelihood", "vecchia", "--neighbors", "20", "--no-figures", "--output", str(out)]
    assert cli.main(args) == 0
    assert len(pd.read_csv(out / "tables" / "gls_aic.csv")) == 2


def test_float32_search_then_float64_polish_matches_float64():
    lon, lat, X, y = _case(900, 5)
    d = lonlat_euclidean(lon, lat)
    a = fit_gls(y, X, d, "rational", True, subsample=300, single=True)
    b = fit_gls(y, X, d, "rational", True, subsample=300, single=False)
    assert a.extra["n_evals32"] > 0 and b.extra["n_evals32"] == 0
    # the reported value is a float64 evaluation: it matches a float64 evaluation there
    assert a.loglik == pytest.approx(gls_loglik(y, X, d, "rational", a.range, a.nugget_value),
                                     abs=1e-9)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-4)


def test_float32_given_up_after_failures_in_a_row():
    """A gaussian C with a tiny nugget is positive-definite in float64 but not in float32:
    after FLOAT32_GIVE_UP failed float32 attempts the likelihood no longer tries them, and
    every value is the float64 one."""
    lon, lat, X, y = _case(400, 3)
    d = lonlat_euclidean(lon, lat)
    lik = GLSLikelihood(y, X, d, "gaussian")
    ranges = [30.0, 40.0, 50.0, 60.0, 80.0]
    values = [lik.loglik(r, 1e-6, single=True) for r in ranges]
    assert lik.n_evals32 == FLOAT32_GIVE_UP  # attempted, failed, then no more
    assert lik.n_evals == len(ranges)
    expected = [gls_loglik(y, X, d, "gaussian", r, 1e-6) for r in ranges]
    assert np.isfinite(expected).all()
    # float64 values (a float32 one is off by ~1e-3; C's conditioning allows 1e-10 here)
    assert values == pytest.approx(expected, rel=1e-9)


def test_model_search_reuses_evaluations():
    h = np.array([[300.0, 250.0], [250.0, 400.0]])
    xo = np.array([1.3, -0.7])
    calls = []

    def f(x):
        calls.append(x)
        dx = x - xo
        return 0.5 * dx @ h @ dx + 0.1 * float(np.sum(dx**3))

    res = _model_search(f, np.array([1.1, -0.5]), [(-5, 5), (-12, 12)], h=0.1, tol=2e-4,
                        h_conv=0.01)
    assert np.linalg.norm(res.x - xo) < 1e-4
    assert res.n_evals == len(calls) <= 18  # a fresh 6-point design per iteration: 25+


@pytest.mark.parametrize("x_start", [[1.0, -2.0], [0.5, -2.0], [1.4, -1.5]])
def test_model_search_reaches_an_optimum_on_a_bound(x_start):
    """A nugget at its lower bound: the profile rises inward in that coordinate and has no
    curvature there, so the 2-D model is never convex. The step is Newton's on the free
    coordinate (an active bound); before, the search stopped 0.007-0.017 short in the free
    one (f up to 3e-4 above the optimum)."""

    def f(x):
        return (x[0] - 1.0) ** 2 + 0.5 * (x[1] + 2.0)

    res = _model_search(f, np.array(x_start), [(-3.0, 3.0), (-2.0, 2.0)], h=0.1, tol=1e-3,
                        h_conv=0.01, max_evals=60)
    assert res.x[1] == -2.0 and abs(res.x[0] - 1.0) < 1e-4 and res.f < 1e-8
    assert res.n_evals <= 30


def test_model_search_ends_where_the_nugget_bound_becomes_active():
    """With the nested fit known (``stop_at_lower``), a search that meets the nugget's lower
    bound, active there, ends on its first design instead of following the bound."""

    def f(x):
        return (x[0] - 1.0) ** 2 + 0.5 * (x[1] + 2.0)

    kw = dict(h=0.1, tol=1e-3, h_conv=0.01, max_evals=60)
    follow = _model_search(f, np.array([1.3, -2.0]), [(-3.0, 3.0), (-2.0, 2.0)], **kw)
    stop = _model_search(f, np.array([1.3, -2.0]), [(-3.0, 3.0), (-2.0, 2.0)],
                         stop_at_lower=1, **kw)
    assert stop.x[1] == -2.0 and follow.x[1] == -2.0
    assert stop.n_evals <= 6 < follow.n_evals
    assert abs(follow.x[0] - 1.0) < 1e-4  # the bound followed to the nested optimum


@pytest.mark.parametrize("x_start", [[1.33, -0.74], [1.27, -0.65]])
@pytest.mark.parametrize("model_hess", [None, np.eye(2)])
def test_polish_reaches_the_float64_optimum_without_the_search_model(x_start, model_hess):
    """The float64 Newton finish needs no (or a wrong) model Hessian from the float32 search:
    it builds its own from central differences and ends where the gradient vanishes, to the
    1e-6 of the reported logLik. Reference optimum: scipy's tight Nelder-Mead."""
    from scipy.optimize import minimize

    h = np.array([[9000.0, -6000.0], [-6000.0, 5000.0]])  # a ridge, as range x nugget
    xo = np.array([1.3, -0.7])

    def f(x):
        dx = np.asarray(x) - xo
        return 0.5 * dx @ h @ dx + 2000.0 * float(np.sum(dx**3)) - 24408.0

    ref = minimize(f, xo + 0.01, method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxfev": 5000})
    res = SearchResult(np.array(x_start), f(x_start), model_hess, 0, 0.03)
    x, fx, gain = _polish(f, res, [(-5, 5), (-12, 12)], h=0.01)
    assert f(x_start) - ref.fun > 1.0  # the start is well below the optimum
    assert fx == pytest.approx(f(x)) and fx - ref.fun < 1e-6
    assert 0 <= gain < 1e-7


@pytest.mark.parametrize("x_start", [[1.33, -0.74], [1.27, -0.65]])
def test_polish_stops_when_its_steps_contract_below_the_tolerance(x_start):
    """A profile that is not quadratic (exponential in log range): the Newton steps contract
    linearly, and once what the contraction leaves is below 1e-7 the central differences
    that would confirm it are not made (19 evaluations instead of 23), at the same point."""
    from scipy.optimize import minimize

    def f(x):
        u, v = x[0] - 1.3, x[1] + 0.7
        return 9000.0 * (math.exp(u) - 1 - u) + 600.0 * (math.cosh(v) - 1) - 1500.0 * u * v

    ref = minimize(f, [1.31, -0.69], method="Nelder-Mead",
                   options={"xatol": 1e-11, "fatol": 1e-13, "maxfev": 5000})
    calls = []

    def counted(x):
        calls.append(x)
        return f(x)

    res = SearchResult(np.array(x_start), f(x_start), None, 0, 0.03)
    x, fx, gain = _polish(counted, res, [(-5, 5), (-12, 12)], h=0.01)
    assert fx - ref.fun < 1e-7 and 0 < gain < 1e-7
    assert len(calls) <= 19


def test_polish_does_not_move_off_a_kink():
    """At a V-shaped kink (a compact correlation's profile where the range crosses a
    distance) the central gradient is 0: no step, nothing predicted."""
    def f(x):
        return 50.0 * abs(float(x[0]) - 0.2)

    res = SearchResult(np.array([0.2]), f([0.2]), np.array([[1.0]]), 0, 0.03)
    x, fx, gain = _polish(f, res, [(-5, 5)], h=0.01)
    assert x[0] == 0.2 and fx == 0.0 and gain == 0.0
