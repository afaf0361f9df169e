"""Coastline land fractions: the separable lookup equals sampling every point of every cell,
and cells whose land is known come out as it is."""

from __future__ import annotations

import numpy as np
import pytest
from global_land_mask import globe

from rhcloud.core.grids import gaussian_grid, regular_grid
from rhcloud.core.landmask import land_fraction


def _point_by_point(grid, nsub: int) -> np.ndarray:
    """Reference: every sample's own (lat, lon) pair looked up in the 1 km mask."""
    lat_b = np.radians(grid["lat_bnds"].values)
    lon_b = grid["lon_bnds"].values
    out = np.zeros((lat_b.shape[0], lon_b.shape[0]))
    u = (np.arange(nsub) + 0.5) / nsub
    for i, (a, b) in enumerate(lat_b):
        lats = np.degrees(np.arcsin(np.sin(a) + (np.sin(b) - np.sin(a)) * u))
        for j, (c, d) in enumerate(lon_b):
            lons = (c + (d - c) * u + 180.0) % 360.0 - 180.0
            la, lo = np.meshgrid(lats, lons, indexing="ij")
            out[i, j] = globe.is_land(np.clip(la, -89.999, 89.999), lo).mean()
    return out


@pytest.mark.parametrize("grid,nsub", [(gaussian_grid(16, 32), 6),
                                       (regular_grid(18, 36, lon0=-175.0), 4),
                                       (regular_grid(12, 24, poles=True), 5)])
def test_land_fraction_equals_sampling_each_point(grid, nsub):
    np.testing.assert_array_equal(land_fraction(grid, nsub), _point_by_point(grid, nsub))


def test_known_cells():
    grid = regular_grid(180, 360)  # 1° cells, centres at x.5
    lf = land_fraction(grid)
    lat, lon = grid["lat"].values, grid["lon"].values

    def at(la, lo):
        return lf[np.argmin(np.abs(lat - la)), np.argmin(np.abs(lon - lo))]

    assert at(23.5, 15.5) == 1.0  # Sahara (Libya/Chad)
    assert at(-0.5, 200.5) == 0.0  # central Pacific
    assert 0.0 < at(43.5, 5.5) < 1.0  # the French Mediterranean coast
    assert np.all((lf >= 0) & (lf <= 1))
