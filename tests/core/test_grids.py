"""Unit tests of rhcloud.grids: published model grids, bounds, cell areas, grid specs."""

from __future__ import annotations

import numpy as np
import pytest

from rhcloud.core import grids
from rhcloud.stages.regrid import reference_grid

SPHERE = 4 * np.pi * grids.EARTH_RADIUS_M**2


@pytest.mark.parametrize("name", sorted(grids.MODEL_GRIDS))
def test_model_grids_are_well_formed(name):
    g = grids.model_grid(name)
    spec = grids.MODEL_GRIDS[name]
    assert (g.sizes["lat"], g.sizes["lon"]) == (spec.nlat, spec.nlon)
    lat, lon = g["lat"].values, g["lon"].values
    assert np.all(np.diff(lat) > 0) and np.all((lon >= 0) & (lon < 360))
    assert grids.bounds_valid(g["lat_bnds"].values, lat)
    assert grids.bounds_valid(g["lon_bnds"].values, lon)
    assert g["lat_bnds"].values[0, 0] == -90 and g["lat_bnds"].values[-1, 1] == 90
    # longitude cells tile the circle exactly once
    np.testing.assert_allclose(np.diff(g["lon_bnds"].values, axis=1).sum(), 360.0)
    np.testing.assert_allclose(float(grids.cell_area(g).sum()), SPHERE, rtol=1e-12)


def test_gaussian_bounds_match_quadrature_weights():
    g = grids.gaussian_grid(128, 256)
    x, w = np.polynomial.legendre.leggauss(128)
    np.testing.assert_allclose(np.sin(np.radians(g["lat"].values)), x, atol=1e-13)
    dsin = np.diff(np.sin(np.radians(g["lat_bnds"].values)), axis=1)[:, 0]
    np.testing.assert_allclose(dsin, w, atol=1e-13)


def test_regular_grid_with_poles_has_half_polar_cells():
    g = grids.regular_grid(192, 288, poles=True)
    assert g["lat"].values[0] == -90 and g["lat"].values[-1] == 90
    widths = np.diff(g["lat_bnds"].values, axis=1)[:, 0]
    np.testing.assert_allclose(widths[[0, -1]], widths[1] / 2)


def test_reference_grid_specs_and_errors(tmp_path):
    assert reference_grid("CNRM-ESM2-1").sizes["lat"] == 128
    r = reference_grid("regular:2.5")
    assert (r.sizes["lat"], r.sizes["lon"]) == (72, 144)
    with pytest.raises(ValueError, match="does not divide"):
        reference_grid("regular:7")
    with pytest.raises(ValueError, match="unknown grid name"):
        reference_grid("NoSuchModel")
    path = tmp_path / "grid.nc"
    grids.model_grid("UKESM1-0-LL").to_netcdf(path)
    back = reference_grid(path)
    np.testing.assert_allclose(back["lon_bnds"].values,
                               grids.model_grid("UKESM1-0-LL")["lon_bnds"].values)
    assert "bounds_note" not in back.attrs


def test_normalize_grid_from_minus180_and_missing_bounds():
    lon = np.arange(-179.5, 180, 1.0)
    lat = np.arange(89.5, -90, -1.0)  # descending, as many products store it
    g = grids.normalize_grid(lat, lon, None, None)
    assert "rebuilt" in g.attrs["bounds_note"]
    assert np.all(np.diff(g["lat"].values) > 0)
    assert g["lon"].values.min() >= 0 and g["lon"].values.max() < 360
    np.testing.assert_allclose(float(grids.cell_area(g).sum()), SPHERE, rtol=1e-12)
