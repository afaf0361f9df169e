"""The climatology stage meets land a model leaves missing: ice sheets (no flux, reported)
against a broken store (excluded); tiny negative fluxes (kept, noted); a model without sftlf
(the coastline's land fraction)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from rhcloud.core import grids
from rhcloud.core.landmask import ice_sheet_fraction, in_ice_region, is_land, land_fraction
from rhcloud.errors import DatasetError
from rhcloud.stages.climatology import finish


@pytest.fixture(scope="module")
def grid():
    return grids.model_grid("IPSL-CM6A-LR")


@pytest.fixture(scope="module")
def land(grid):
    return land_fraction(grid), ice_sheet_fraction(grid)


def _clim(grid, flux, landfrac=None):
    ds = xr.Dataset({"flux": (("lat", "lon"), flux), "lat_bnds": grid["lat_bnds"],
                     "lon_bnds": grid["lon_bnds"],
                     "area": (("lat", "lon"), grids.cell_area(grid).values)},
                    coords={"lat": grid["lat"], "lon": grid["lon"]},
                    attrs={"zstore": "gs://cmip6/test/store", "notes": ""})
    if landfrac is not None:
        ds["landfrac"] = (("lat", "lon"), landfrac)
        ds["landfrac"].attrs["source"] = "sftlf"
    return ds


def _field(lf):
    rng = np.random.default_rng(1)
    return np.where(lf > 0, 200.0 + 50.0 * rng.random(lf.shape), np.nan)


def test_land_ice_region_is_antarctica_and_greenland():
    lat = np.array([-75.0, -70.0, 72.0, 80.0, 80.0, 62.0, 60.0])
    lon = np.array([40.0, 120.0, -40.0, -30.0, -80.0, 100.0, -45.0])
    # Antarctica, Antarctica, Greenland, north Greenland, Ellesmere, Siberia, Cape Farewell
    assert in_ice_region(lat, lon).tolist() == [True, True, True, True, False, False, True]
    assert is_land(lat[:3], lon[:3]).all()


def test_ice_sheet_share_of_land_is_about_a_tenth(grid, land):
    lf, ice = land
    w = grids.cell_area(grid).values * lf
    share = (w * ice / np.where(lf > 0, lf, 1)).sum() / w.sum()
    assert 0.08 < share < 0.12  # Antarctica 9 % and Greenland 1.5 % of the land area


def test_ice_sheets_left_missing_count_as_no_flux(grid, land):
    lf, ice = land
    flux = _field(lf)
    flux[ice > 0] = np.nan
    clim = finish(_clim(grid, flux, lf))
    w = clim["area"].values * lf
    missing = (ice > 0) & (lf > 0)
    assert clim.attrs["ice_sheet_missing_share"] == pytest.approx(
        w[missing].sum() / w.sum(), rel=1e-12)
    assert clim.attrs["ice_sheet_missing_share"] > 0.08  # more than the 5 % rule allows
    assert np.all(clim["flux"].values[missing] == 0.0)
    assert "ice-sheet land left missing" in clim.attrs["notes"]
    want = np.nansum(np.where(missing, 0.0, flux) * w) / 1e15
    assert clim.attrs["land_total_PgC_yr"] == pytest.approx(want, rel=1e-12)


def test_random_nans_over_a_tenth_of_other_land_still_exclude(grid, land):
    lf, ice = land
    flux = _field(lf)
    flux[ice > 0] = np.nan  # the ice sheets too: they do not excuse the rest
    rng = np.random.default_rng(7)
    other = np.flatnonzero((lf > 0) & (ice == 0))
    w = (grids.cell_area(grid).values * lf).ravel()
    order = rng.permutation(other)
    take = order[np.cumsum(w[order]) <= 0.10 * w.sum()]
    flux.ravel()[take] = np.nan
    with pytest.raises(DatasetError) as err:
        finish(_clim(grid, flux, lf))
    assert err.value.zstore == "gs://cmip6/test/store"
    assert "outside the ice sheets" in err.value.reason
    assert "10." in err.value.reason or "9.9" in err.value.reason


def test_tiny_negative_fluxes_kept_and_noted(grid, land):
    lf, _ = land
    flux = _field(lf)
    dry = np.flatnonzero(lf > 0)[:40]
    flux.ravel()[dry] = -0.075
    clim = finish(_clim(grid, flux, lf))
    assert np.all(clim["flux"].values.ravel()[dry] == -0.075)
    assert "40 land cells with negative flux" in clim.attrs["notes"]


def test_without_sftlf_the_coastline_weights_the_total(grid, land):
    lf, _ = land
    flux = _field(lf)
    clim = finish(_clim(grid, flux))
    assert clim.attrs["landfrac_source"].startswith("coastline")
    np.testing.assert_array_equal(clim["landfrac"].values, lf)
    want = np.nansum(flux * grids.cell_area(grid).values * lf) / 1e15
    assert clim.attrs["land_total_PgC_yr"] == pytest.approx(want, rel=1e-12)


def test_without_sftlf_the_models_own_coast_is_not_missing_land(grid, land):
    lf, _ = land
    flux = _field(lf)
    coast = (lf > 0) & (lf < 0.5)
    flux[coast] = np.nan  # a model whose land mask is its cells at least half land
    clim = finish(_clim(grid, flux))
    assert np.all(clim["landfrac"].values[coast] == 0.0)
    assert clim.attrs["ice_sheet_missing_share"] == 0.0
    assert "land cells missing" not in clim.attrs["notes"]
