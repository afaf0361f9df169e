"""The planted truth of the virtual CMIP6 world: analytic fields of (lat, lon).

Every field is a pure function of latitude and longitude (degrees), so it can be evaluated
on any grid or raster at any resolution and stays the same truth everywhere:

- ``mat``/``map_``: mean annual temperature (°C) and precipitation (mm yr-1);
- ``true_rh``: the "true" heterotrophic respiration (g C m-2 yr-1) the products observe;
- ``smooth_noise``: spatially correlated Gaussian noise with a Gaussian covariance in
  chordal distance, realised with random Fourier features so it is grid-independent;
- ``model_rh``: a model's field = scale × truth + the planted MAP bias + correlated errors.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_KM = 6371.0

# Scale of the truth so that its land total is about 46 Pg C yr-1 (the paper's product median).
R0_G_M2_YR = 281.0

# Correlated model-error structure (written to truth.json). A Gaussian covariance
# exp(-|p-q|² / (2 ℓ²)) in chordal distance equals nlme's corGaus with range = ℓ·√2.
ERROR_LENGTH_KM = 700.0
ERROR_SD_G_M2_YR = 60.0
OWN_SD_FRACTION = 0.8  # each model's own correlated error, relative to the common one
N_FEATURES = 400

# The planted bias driver: models respire too much where it is wet, too little where dry.
MAP_BIAS_AMPLITUDE = 80.0  # g C m-2 yr-1
MAP_BIAS_CENTRE = 1000.0  # mm yr-1
MAP_BIAS_WIDTH = 800.0  # mm yr-1


def _radians(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.radians(np.asarray(lat, dtype=float)), np.radians(np.asarray(lon, dtype=float))


def mat(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Mean annual air temperature (°C)."""
    phi, lam = _radians(lat, lon)
    t = -15.0 + 42.0 * np.cos(phi) ** 1.2 + 3.0 * np.sin(2 * lam + 0.5) * np.cos(phi)
    lat = np.asarray(lat, dtype=float)
    lon360 = np.mod(lon, 360.0)
    t = t - 10.0 * (lat < -60) - 8.0 * ((lat > 60) & (lon360 > 300) & (lon360 < 340))
    return t


def map_(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Mean annual precipitation (mm yr-1)."""
    _, lam = _radians(lat, lon)
    lat = np.asarray(lat, dtype=float)
    p = (
        300.0
        + 2200.0 * np.exp(-((lat - 5.0) ** 2) / (2 * 9.0**2))
        + 700.0 * np.exp(-((np.abs(lat) - 50.0) ** 2) / (2 * 10.0**2))
        - 250.0 * np.exp(-((np.abs(lat) - 25.0) ** 2) / (2 * 6.0**2))
        + 500.0 * np.sin(3 * lam) * np.exp(-(lat**2) / (2 * 25.0**2))
    )
    return np.maximum(p, 30.0)


def true_rh(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The true heterotrophic respiration (g C m-2 yr-1): Q10 = 2 in temperature, saturating
    in precipitation, shut down below freezing."""
    t = mat(lat, lon)
    p = map_(lat, lon)
    cold = 1.0 / (1.0 + np.exp(-(t + 5.0) / 2.0))
    return R0_G_M2_YR * 2.0 ** ((t - 10.0) / 10.0) * p / (p + 400.0) * cold


def map_bias(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The planted bias common to all models (g C m-2 yr-1), a smooth function of MAP,
    damped where there is little to respire."""
    r = true_rh(lat, lon)
    active = r / (r + 50.0)
    return MAP_BIAS_AMPLITUDE * np.tanh((map_(lat, lon) - MAP_BIAS_CENTRE) / MAP_BIAS_WIDTH) * active


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, lam = _radians(lat, lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


@dataclass(frozen=True)
class SmoothNoise:
    """A grid-independent realisation of a zero-mean Gaussian field with covariance
    sd² · exp(-c² / (2 ℓ²)), c the chordal distance (km)."""

    omega: np.ndarray  # (K, 3), 1/km
    phase: np.ndarray  # (K,)
    amp: np.ndarray  # (K,)
    sd: float

    @classmethod
    def from_seed(cls, seed: int | np.random.SeedSequence, length_km: float = ERROR_LENGTH_KM,
                  sd: float = ERROR_SD_G_M2_YR, n_features: int = N_FEATURES) -> SmoothNoise:
        rng = np.random.default_rng(seed)
        omega = rng.normal(0.0, 1.0 / length_km, size=(n_features, 3))
        phase = rng.uniform(0.0, 2 * np.pi, size=n_features)
        amp = rng.normal(0.0, 1.0, size=n_features)
        return cls(omega, phase, amp, sd)

    def __call__(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        lat_b, lon_b = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lon, float))
        p = _unit_vectors(lat_b, lon_b).reshape(-1, 3) * EARTH_RADIUS_KM
        out = np.empty(p.shape[0])
        k = self.amp.size
        step = max(1, 2_000_000 // k)  # bound the (cells × features) temporary
        for i in range(0, p.shape[0], step):
            arg = p[i:i + step] @ self.omega.T + self.phase
            out[i:i + step] = np.cos(arg) @ self.amp
        return (out * self.sd * np.sqrt(2.0 / k)).reshape(lat_b.shape)


@dataclass(frozen=True)
class ModelTruth:
    """The planted parameters of one model (and its members)."""

    source_id: str
    scale: float  # multiplies the true Rh
    npp_ratio: float  # NPP / Rh of the model
    seed: int

    def rh(self, lat: np.ndarray, lon: np.ndarray, common: SmoothNoise,
           member_index: int = 0) -> np.ndarray:
        """The model's 1990–2010 mean Rh (g C m-2 yr-1) for one member (0 = first)."""
        field = model_error_field(self, lat, lon, common)
        if member_index:
            spread = SmoothNoise.from_seed(self.seed * 1000 + member_index,
                                           sd=0.03, length_km=1500.0)
            field = field * (1.0 + spread(lat, lon))
        return np.maximum(field, 0.0)


    def npp(self, lat: np.ndarray, lon: np.ndarray, member_index: int = 0) -> np.ndarray:
        """The model's 1990–2010 mean NPP (g C m-2 yr-1): its own scale of the truth times
        its NPP/Rh ratio, plus an NPP error of its own — independent of the Rh bias driver
        and of the common Rh error, so that the NPP residual is a driver distinct from them."""
        err = SmoothNoise.from_seed(self.seed + 5000 + member_index, sd=NPP_ERROR_SD_G_M2_YR)
        return np.maximum(self.npp_ratio * self.scale * true_rh(lat, lon) + err(lat, lon), 0.0)


NPP_ERROR_SD_G_M2_YR = 40.0

MODEL_SCALES: dict[str, tuple[float, float]] = {
    # source_id: (scale of true Rh, NPP/Rh ratio); totals span roughly 29–78 Pg C yr-1
    "BCC-CSM2-MR": (0.85, 1.10),
    "BCC-ESM1": (0.75, 1.15),
    "CanESM5": (1.65, 1.05),
    "CESM2": (1.10, 1.12),
    "CNRM-ESM2-1": (1.20, 1.08),
    "E3SM-1-1-ECA": (0.67, 1.20),
    "IPSL-CM6A-LR": (1.00, 1.10),
    "MIROC-ES2L": (1.05, 1.09),
    "MPI-ESM1-2-LR": (1.35, 1.06),
    "NorCPM1": (0.80, 1.14),
    "NorESM2-LM": (0.88, 1.13),
    "SAM0-UNICON": (0.92, 1.11),
    "UKESM1-0-LL": (1.10, 1.07),
}


def model_truths(seed: int) -> dict[str, ModelTruth]:
    """Per-model planted parameters, deterministic from ``seed``."""
    return {
        sid: ModelTruth(sid, scale, ratio, seed=seed * 100 + i + 1)
        for i, (sid, (scale, ratio)) in enumerate(MODEL_SCALES.items())
    }


# --------------------------------------------------------------------------------------
# The planted model errors (issue 12: realistic Table 1). Kept apart from the bias
# drivers above: each model's field is its scaled truth distorted by a smooth
# multiplicative pattern error, plus the common bias and error, plus its own additive
# error; ``MODEL_ERRORS`` sizes the last two per model so that the demo's Table 1 spans
# the paper's ranges (RMSE ~170-350 g C m-2 yr-1, R² ~0.55-0.85).
# --------------------------------------------------------------------------------------

PATTERN_LENGTH_KM = 1500.0  # length scale of the multiplicative pattern error
ACTIVE_HALF_G_M2_YR = 50.0  # the own error is damped by Rh / (Rh + this)

MODEL_ERRORS: dict[str, tuple[float, float]] = {
    # source_id: (sd of its own additive error, g C m-2 yr-1; sd of its pattern error, 1)
    "BCC-CSM2-MR": (60.0, 0.5),
    "BCC-ESM1": (280.0, 0.5),
    "CanESM5": (280.0, 0.15),
    "CESM2": (220.0, 0.15),
    "CNRM-ESM2-1": (170.0, 0.25),
    "E3SM-1-1-ECA": (110.0, 0.475),
    "IPSL-CM6A-LR": (140.0, 0.5),
    "MIROC-ES2L": (250.0, 0.15),
    "MPI-ESM1-2-LR": (250.0, 0.175),
    "NorCPM1": (200.0, 0.15),
    "NorESM2-LM": (300.0, 0.4),
    "SAM0-UNICON": (230.0, 0.375),
    "UKESM1-0-LL": (250.0, 0.425),
}
DEFAULT_MODEL_ERROR = (230.0, 0.35)


def model_errors(source_id: str) -> tuple[float, float]:
    """(own additive error sd in g C m-2 yr-1, multiplicative pattern error sd) of a model."""
    return MODEL_ERRORS.get(source_id, DEFAULT_MODEL_ERROR)


def _pattern(seed: int, sd: float) -> SmoothNoise:
    return SmoothNoise.from_seed(seed, sd=sd, length_km=PATTERN_LENGTH_KM)


@functools.lru_cache(maxsize=64)
def _land_mean(seed: int, sd: float) -> float:
    """The Rh-weighted land mean of a pattern error (on a 2° grid with Earth's coastline),
    taken out so that the pattern redistributes a model's flux without changing its
    total: the totals stay those of the scales."""
    from rhcloud.core.grids import cell_area, regular_grid
    from rhcloud.core.landmask import land_fraction

    grid = regular_grid(90, 180, lon0=1.0)
    la, lo = np.meshgrid(grid["lat"].values, grid["lon"].values, indexing="ij")
    w = true_rh(la, lo) * land_fraction(grid, nsub=4) * cell_area(grid).values
    return float(np.sum(w * _pattern(seed, sd)(la, lo)) / np.sum(w))


def model_error_field(truth: ModelTruth, lat: np.ndarray, lon: np.ndarray,
                      common: SmoothNoise) -> np.ndarray:
    """A model's first-member climatology before clipping at zero (g C m-2 yr-1):
    scale · Rh · (1 + pattern) + B(MAP) + e_common + e_own, with ``pattern`` a smooth field
    (sd from :func:`model_errors`, length ``PATTERN_LENGTH_KM``) and ``e_own`` the model's
    own correlated error (sd from :func:`model_errors`, length ``ERROR_LENGTH_KM``) damped
    by Rh / (Rh + ``ACTIVE_HALF_G_M2_YR``) where little respires."""
    own_sd, pattern_sd = model_errors(truth.source_id)
    own = SmoothNoise.from_seed(truth.seed, sd=own_sd)
    pattern = _pattern(truth.seed + 7000, pattern_sd)
    rh = true_rh(lat, lon)
    active = rh / (rh + ACTIVE_HALF_G_M2_YR)  # no large errors where nothing respires
    distortion = 1.0 + pattern(lat, lon) - _land_mean(truth.seed + 7000, pattern_sd)
    return truth.scale * rh * distortion + map_bias(lat, lon) \
        + common(lat, lon) + own(lat, lon) * active

# ---------------------------------------------------------------------------------------
# A model with a wet bias of its own (issue 16): a separate addition on top of its field
# ---------------------------------------------------------------------------------------

WET_BIAS_MODEL = "NorESM2-LM"
WET_BIAS_AMPLITUDE = 500.0  # g C m-2 yr-1 at MAP >= centre + width
WET_BIAS_CENTRE = 1000.0  # mm yr-1
WET_BIAS_WIDTH = 1500.0  # mm yr-1


def wet_bias(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Extra Rh of ``WET_BIAS_MODEL`` where it is wet (g C m-2 yr-1, ≥ 0):
    A · clip((MAP − c) / w, 0, 1) · Rh/(Rh + 50) — it respires too much with rain."""
    r = true_rh(lat, lon)
    wet = np.clip((map_(lat, lon) - WET_BIAS_CENTRE) / WET_BIAS_WIDTH, 0.0, 1.0)
    return WET_BIAS_AMPLITUDE * wet * r / (r + 50.0)


def extra_rh(source_id: str, lat: np.ndarray, lon: np.ndarray) -> np.ndarray | float:
    """What a model adds to :meth:`ModelTruth.rh` beyond the common structure: the wet bias
    of ``WET_BIAS_MODEL``, nothing for the others."""
    return wet_bias(lat, lon) if source_id == WET_BIAS_MODEL else 0.0
