"""nlme's isotropic spatial correlation structures, evaluated in place.

With ``s = d / range`` (``d`` and ``range`` in the same unit, km or degrees):

============================  =======================================
``exponential``  (corExp)     ``exp(-s)``
``gaussian``     (corGaus)    ``exp(-s^2)``
``rational``     (corRatio)   ``1 / (1 + s^2)``
``spherical``    (corSpher)   ``1 - 1.5 s + 0.5 s^3`` for ``s < 1``, else 0
``linear``       (corLin)     ``1 - s`` for ``s < 1``, else 0
``none``                      identity
============================  =======================================

With a nugget ``nu`` in [0, 1) the off-diagonal correlation is ``(1 - nu) rho(s)`` and
the diagonal is 1 (nlme's parametrization: ``nu`` is the iid share of the variance).

The matrix is filled by blocks of rows in a small thread pool (numpy releases the GIL), only
the upper triangle of the C-ordered buffer (= lower triangle of its Fortran-ordered
transpose, which is what LAPACK ``dpotrf`` reads) is computed unless ``full=True``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._blas import cores

STRUCTURES: tuple[str, ...] = ("exponential", "gaussian", "spherical", "linear", "rational")
"""Correlation structures with a range parameter (plus ``"none"``)."""

ALIASES = {
    "exp": "exponential", "corexp": "exponential",
    "gaus": "gaussian", "gauss": "gaussian", "corgaus": "gaussian",
    "spher": "spherical", "corspher": "spherical",
    "lin": "linear", "corlin": "linear",
    "ratio": "rational", "rational quadratic": "rational", "rational_quadratic": "rational",
    "corratio": "rational",
}

# Structures that stay positive-definite with great-circle distance on the sphere
# (Gneiting 2013, Stat. Sci.): completely monotone exponential, and the spherical model.
# The others are evaluated on chordal distance when "great-circle" is asked for.
SPHERE_VALID = frozenset({"exponential", "spherical"})

_BLOCK_ROWS = 256
_F32_TINY = 2.0**-24  # float32's unit roundoff: float32 correlations below it are set to 0
_F64_TINY = 1e-100  # float64 correlations below this are set to 0 (no subnormals)


def canonical(structure: str) -> str:
    """Canonical structure name (accepts nlme-like aliases such as ``corRatio``)."""
    key = structure.strip().lower()
    key = ALIASES.get(key, key)
    if key not in STRUCTURES and key != "none":
        raise ValueError(f"unknown correlation structure {structure!r}")
    return key


def rho(structure: str, s: np.ndarray) -> np.ndarray:
    """Correlation function of ``s = d / range`` (not in place; for grids and tests)."""
    structure = canonical(structure)
    s = np.asarray(s, dtype=np.float64)
    if structure == "exponential":
        return np.exp(-s)
    if structure == "gaussian":
        return np.exp(-(s * s))
    if structure == "rational":
        return 1.0 / (1.0 + s * s)
    if structure == "spherical":
        t = np.minimum(s, 1.0)
        return 1.0 - 1.5 * t + 0.5 * t**3
    if structure == "linear":
        return 1.0 - np.minimum(s, 1.0)
    return (s == 0).astype(np.float64)


def rho_inplace(structure: str, s: np.ndarray) -> np.ndarray:
    """nlme's correlation ρ(s) of scaled distances ``s`` = d / range, written over ``s``."""
    if structure == "exponential":
        np.negative(s, out=s)
        np.exp(s, out=s)
    elif structure == "gaussian":
        np.square(s, out=s)
        np.negative(s, out=s)
        np.exp(s, out=s)
    elif structure == "rational":
        np.square(s, out=s)
        s += 1.0
        np.reciprocal(s, out=s)
    elif structure == "spherical":
        np.minimum(s, 1.0, out=s)
        t = np.square(s)
        t *= 0.5
        t -= 1.5
        s *= t
        s += 1.0
    elif structure == "linear":
        np.minimum(s, 1.0, out=s)
        np.negative(s, out=s)
        s += 1.0
    else:
        raise ValueError(f"unknown correlation structure {structure!r}")
    return s


def _fill_block(structure: str, d: np.ndarray, out: np.ndarray, inv_range: float,
                scale: float) -> None:
    np.multiply(d, inv_range, out=out)
    rho_inplace(structure, out)
    if scale != 1.0:
        out *= scale
    if out.dtype == np.float32:
        # subnormals make the single-precision Cholesky several times slower, and they
        # arise in its updates from small entries too (a gaussian at range 817 km and
        # nugget 0.012, n = 7,458: spotrf 4.4 s with entries down to 1e-15 kept, 1.5 s
        # with entries below 2^-24 set to 0). Zeroing an entry below 2^-24 changes it by
        # less than rounding an entry near 1 to float32 can (half an ulp of 1 is 2^-24);
        # the float32 likelihood only locates the optimum, which is evaluated in float64
        out[out < _F32_TINY] = 0.0
    elif structure in ("gaussian", "exponential"):
        # the same in float64: a gaussian's tail ~27 ranges out is subnormal, and dpotrf
        # took 20 s instead of 2.7 s at n = 7,458 (range 395 km); an entry below 1e-100
        # cannot change a sum with the unit diagonal
        out[out < _F64_TINY] = 0.0


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))
    return _POOL


def fill_correlation(structure: str, dist: np.ndarray, range_: float, nugget: float = 0.0,
                     out: np.ndarray | None = None, full: bool = False) -> np.ndarray:
    """Correlation matrix ``C`` of a structure at ``range_`` and ``nugget``.

    ``dist`` is a C-ordered (n, n) distance matrix in the unit of ``range_``. ``out``
    (same shape, C order, float64 or float32; entries below 2^-24 (float32) or 1e-100
    (float64, gaussian and exponential) are set to 0)
    is overwritten; without ``full`` only its upper triangle
    (row <= column) is defined, which is the lower triangle of ``out.T`` (Fortran order)
    as read by ``scipy.linalg.lapack.dpotrf(out.T, lower=1)``.
    """
    structure = canonical(structure)
    n = dist.shape[0]
    if out is None:
        out = np.empty_like(dist, dtype=np.float64, order="C")
    if structure == "none":
        out[...] = 0.0
        np.fill_diagonal(out, 1.0)
        return out
    if not (range_ > 0 and np.isfinite(range_)):
        raise ValueError("range must be positive and finite")
    inv_range = 1.0 / range_
    scale = 1.0 - nugget
    n_blocks = max(1, -(-n // _BLOCK_ROWS))

    def work(b: int) -> None:
        a0, a1 = b * _BLOCK_ROWS, min(n, (b + 1) * _BLOCK_ROWS)
        c0 = 0 if full else a0
        _fill_block(structure, dist[a0:a1, c0:], out[a0:a1, c0:], inv_range, scale)

    if n_blocks == 1 or n < 1024 or cores() == 1:
        for b in range(n_blocks):
            work(b)
    else:
        list(_pool().map(work, range(n_blocks)))
    np.fill_diagonal(out, 1.0)
    return out
