"""The fit cache: a rerun, or a run stopped in the drivers stage and resumed, refits only the
GLS structures and the GAMM not yet done, and gives exactly the tables of an uninterrupted
run."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from drivers_helpers import simulate_gamm_case

from rhcloud.drivers import api, gls
from rhcloud.drivers.api import fit_drivers
from rhcloud.drivers.fitcache import FitCache, from_json, to_json

STRUCTURES = ["exponential", "rational", "spherical"]
N_FITS = 2 * len(STRUCTURES)  # with and without nugget; the exact "none" row is not cached
N_ENTRIES = N_FITS + 1  # and the GAMM selection (with and without the factor)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate_gamm_case(n=150, seed=5)


def _fit(data, cache=None, structures=STRUCTURES, **kw):
    return fit_drivers(data, response="y", smooth=["x1", "x2"], factor=["lith"],
                       distance="lonlat", structures=structures, fit_cache=cache, **kw)


def _same(a, b):
    pd.testing.assert_frame_equal(a.gls_aic(), b.gls_aic(), check_exact=True)
    pd.testing.assert_frame_equal(a.gamm_terms(), b.gamm_terms(), check_exact=True)
    pd.testing.assert_frame_equal(a.gamm_effects(), b.gamm_effects(), check_exact=True)


@pytest.fixture(scope="module")
def first_run(data, tmp_path_factory):
    """A first run with a cache: (its result, its cache directory)."""
    url = tmp_path_factory.mktemp("first") / "fits"
    cache = FitCache(url)
    result = _fit(data, cache)
    assert (cache.hits, cache.fitted, cache.failures) == (0, N_ENTRIES, [])
    assert len(list(url.glob("*.json"))) == N_ENTRIES
    return result, url


@pytest.fixture(scope="module")
def plain(first_run):
    return first_run[0]


@pytest.fixture
def filled(first_run, tmp_path):
    """A private copy of the first run's cache."""
    return shutil.copytree(first_run[1], tmp_path / "fits")


def _no_fitting(monkeypatch):
    """Any correlated GLS fit or GAMM from here on fails the test (the exact ``none`` row is
    cheap and always made)."""
    real = gls.fit_gls

    def guarded(y, X, dist, structure, *a, **kw):
        assert structure == "none", f"{structure} was refitted"
        return real(y, X, dist, structure, *a, **kw)

    monkeypatch.setattr(gls, "fit_gls", guarded)
    monkeypatch.setattr(api, "fit_gamm_select", lambda *a, **k: pytest.fail("GAMM refitted"))


def _equal(a, b, path="fit"):
    """Field by field, arrays and frames exactly, NaN equal to NaN."""
    if hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b), path
        for name in a.__dataclass_fields__:
            _equal(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=path)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _equal(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _equal(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), path  # NaN == NaN here


def test_json_round_trip_keeps_every_field(plain):
    for fit in plain.gls_fits:
        _equal(from_json(to_json(fit)), fit)
    back = from_json(to_json(plain.gamm))
    _equal(back, plain.gamm)
    x = np.linspace(-2, 2, 7)
    np.testing.assert_array_equal(back.fit.predict_term("x1", x)[0],
                                  plain.gamm.fit.predict_term("x1", x)[0])


def test_a_first_run_with_a_cache_is_a_run_without(data, plain):
    _same(_fit(data), plain)


def test_rerun_fits_nothing_and_gives_the_same_tables(data, plain, filled, monkeypatch):
    _no_fitting(monkeypatch)
    again = FitCache(filled)
    second = _fit(data, again)
    assert (again.hits, again.fitted) == (N_ENTRIES, 0)
    _same(second, plain)
    assert second.gamm.decision == plain.gamm.decision


def test_a_run_stopped_in_the_gls_table_resumes_with_the_remaining_fits(data, plain, tmp_path,
                                                                         monkeypatch):
    real, made = gls.fit_gls, []

    def preempted(y, X, dist, structure, *a, **kw):
        if structure != "none" and len(made) == 3:
            raise KeyboardInterrupt("pod preempted")  # what SIGTERM/SIGINT look like
        fit = real(y, X, dist, structure, *a, **kw)
        if structure != "none":
            made.append(structure)
        return fit

    monkeypatch.setattr(gls, "fit_gls", preempted)
    with pytest.raises(KeyboardInterrupt):
        _fit(data, FitCache(tmp_path / "fits"))
    monkeypatch.setattr(gls, "fit_gls", real)
    resumed = FitCache(tmp_path / "fits")
    _same(_fit(data, resumed), plain)
    assert (resumed.hits, resumed.fitted) == (3, N_ENTRIES - 3)


@pytest.mark.parametrize("change", ["response", "covariate", "factor", "distance"])
def test_changed_inputs_are_refitted(data, filled, change):
    other = data.copy()
    if change == "response":
        other.loc[7, "y"] += 1e-9
    elif change == "covariate":
        other["x2"] = other["x2"][::-1].to_numpy()
    elif change == "factor":
        other.loc[3, "lith"] = "b" if other.loc[3, "lith"] != "b" else "c"
    cache = FitCache(filled)
    if change == "distance":
        fit_drivers(other, response="y", smooth=["x1", "x2"], factor=["lith"],
                    distance="great-circle", structures=STRUCTURES, fit_cache=cache)
    else:
        _fit(other, cache)
    assert (cache.hits, cache.fitted) == (0, N_ENTRIES)


def test_a_gamm_option_refits_the_gamm_only(data, filled):
    cache = FitCache(filled)
    _fit(data, cache, alpha=0.01)
    assert (cache.hits, cache.fitted) == (N_FITS, 1)


def test_fresh_refits_everything(data, plain, filled):
    fresh = FitCache(filled, fresh=True)
    _same(_fit(data, fresh), plain)
    assert (fresh.hits, fresh.fitted) == (0, N_ENTRIES)


def test_a_damaged_entry_is_refitted(data, plain, filled):
    entries = sorted(filled.glob("*.json"))
    entries[0].write_text('{"__type__": "GLSFit", "fields": {"coef": ')  # a write cut short
    entries[1].write_text('{"__type__": "Popen", "fields": {"args": ["sh"]}}')  # not a fit
    entries[2].write_text('{"unexpected": 1}')
    cache = FitCache(filled)
    _same(_fit(data, cache), plain)
    assert (cache.hits, cache.fitted) == (N_ENTRIES - 3, 3)


def test_a_cache_that_cannot_be_written_never_sinks_the_fit(data, plain, tmp_path):
    (tmp_path / "blocked").write_text("a file where the cache directory would be")
    cache = FitCache(tmp_path / "blocked" / "fits")
    _same(_fit(data, cache), plain)
    assert cache.fitted == N_ENTRIES and len(cache.failures) == N_ENTRIES


def test_vecchia_fits_are_cached_under_their_own_key(data, filled, monkeypatch):
    import rhcloud.drivers.vecchia as V

    one = {"structures": ["exponential"], "gamm": False, "likelihood": "vecchia"}
    vecchia = FitCache(filled)
    first = _fit(data, vecchia, neighbors=20, **one)
    assert (vecchia.hits, vecchia.fitted) == (0, 2)  # not the exact fits
    with monkeypatch.context() as m:
        m.setattr(V, "fit_gls_vecchia", lambda *a, **k: pytest.fail("refitted"))
        again = FitCache(filled)
        _same(_fit(data, again, neighbors=20, **one), first)
        assert again.hits == 2
    other = FitCache(filled)
    _fit(data, other, neighbors=10, **one)
    assert (other.hits, other.fitted) == (0, 2)
