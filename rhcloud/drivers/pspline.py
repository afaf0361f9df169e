"""P-spline basis and penalty for the GAMM, from ``scipy.interpolate.BSpline``.

The same basis and penalty as pygam's ``pygam.utils.b_spline_basis(..., periodic=False)``
and ``pygam.penalties.derivative`` (tested equal to 1e-12 in ``tests/drivers/test_pspline.py``
where pygam is installed), without pygam: pygam 0.12 pins ``scipy<1.17``, which would make
rhcloud downgrade the scipy of the newest Pangeo image (2026.01.30 ships scipy 1.17.0).

Basis (mgcv's ``bs = "ps"`` with the edges the GAMM passes, see ``gamm.make_smooth``):
``x`` is rescaled to ``u = (x - lo) / (hi - lo)``; ``n_splines - order + 1`` equally spaced
knots span [0, 1] with spacing ``d``, ``order`` more knots continue the spacing on each side
(the outermost one moved out by 1e-9, as pygam does to make the last knot inclusive), and
the ``n_splines`` B-splines of degree ``order`` on these knots are evaluated at ``u``.
Outside [0, 1] each basis function continues linearly with its value and slope at the end it
passed (pygam's extrapolation). Penalty: ``D^T D`` with ``D`` the ``diff_order``-th
difference matrix of the coefficients (Eilers & Marx 1996).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import BSpline


def knots(n_splines: int, order: int = 3) -> np.ndarray:
    """The knot vector on the rescaled axis ([0, 1] the edges): ``n_splines + order + 1``
    knots, equally spaced, the last one moved out by 1e-9."""
    if not isinstance(n_splines, int | np.integer) or n_splines < order + 1:
        raise ValueError(f"n_splines must be an integer >= order + 1 = {order + 1}, "
                         f"got {n_splines!r}")
    if not isinstance(order, int | np.integer) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    inner = np.linspace(0.0, 1.0, 1 + n_splines - order)
    d = np.diff(inner[:2])[0]
    aug = np.arange(1, order + 1) * d
    t = np.r_[-aug[::-1], inner, 1.0 + aug]
    t[-1] += 1e-9
    return t


def b_spline_basis(x: np.ndarray, edge: tuple[float, float] | np.ndarray, n_splines: int,
                   order: int = 3) -> np.ndarray:
    """The ``len(x) x n_splines`` B-spline basis of degree ``order`` with equally spaced
    knots between ``edge`` (lo, hi), extrapolated linearly beyond them."""
    x = np.asarray(x, np.float64)
    if np.ravel(x).ndim != 1 or x.ndim > 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    lo, hi = np.sort(np.asarray(edge, np.float64))[[0, -1]]
    scale = hi - lo
    if scale == 0:
        scale = 1.0
    u = (np.ravel(x) - lo) / scale
    t = knots(n_splines, order)
    spline = BSpline(t, np.eye(n_splines), order, extrapolate=False)
    out = np.empty((u.size, n_splines))
    inside = (u >= 0.0) & (u <= 1.0)
    if inside.any():
        out[inside] = spline(u[inside])
    left, right = u < 0.0, u > 1.0
    if left.any() or right.any():
        ends = np.array([0.0, 1.0])
        value = spline(ends)
        slope = spline.derivative(1)(ends)
        if left.any():
            out[left] = value[0] + slope[0] * u[left, None]
        if right.any():
            out[right] = value[1] + slope[1] * (u[right, None] - 1.0)
    return out


def difference_penalty(n_splines: int, diff_order: int = 2) -> np.ndarray:
    """``D^T D`` (``n_splines x n_splines``), ``D`` the ``diff_order``-th differences."""
    if n_splines == 1:
        return np.zeros((1, 1))
    d = np.diff(np.eye(n_splines), n=diff_order, axis=0)
    return d.T @ d
