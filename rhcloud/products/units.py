"""Unit conversions for observation-derived products and covariates.

Each conversion is explicit: a table of the unit spellings a product is known to publish,
and the factor/offset to the pipeline's unit. Anything else raises :class:`ProductError`
naming the file and the expected units — a silent wrong factor is worse than a stop.

Target units: fluxes (Rh, NPP) g C m-2 yr-1; MAT °C; MAP mm yr-1; SOC g C m-2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rhcloud.core.units import UnitsError, flux_factor
from rhcloud.errors import RhcloudError


class ProductError(RhcloudError):
    """A product or covariate file that cannot be read as declared (units, variable, CRS,
    layout). The message names the file and what was expected."""


@dataclass(frozen=True)
class FluxUnits:
    """A parsed carbon-flux unit. ``per`` is ``"s"`` (a rate per second: multiply by the
    year length in s), ``"yr"`` (a rate per year) or ``"month"`` (a monthly total: the
    annual value is the sum over a year's months). ``factor`` converts the mass/area part
    (and seconds-based time part) to g m-2 [per s | per yr | per month]."""

    text: str
    factor: float
    per: str


_CARBON = re.compile(r"(?<![A-Za-z])C(?![A-Za-z])")  # a lone 'C' (carbon), not 'gC' or 'Ca'
_MONTH = re.compile(r"(?<![A-Za-z])(month|mon|mo)(?=[-+]?\d|\b)")


def parse_flux_units(units: str, *, where: str = "") -> FluxUnits:
    """Parse a carbon mass flux per area, e.g. ``kg m-2 s-1``, ``g C m-2 yr-1``,
    ``gC/m2/month``, ``g C m-2 day-1``. Raises ProductError naming ``where``."""
    if units is None or not str(units).strip():
        raise ProductError(f"{where}: no units attribute; expected a carbon mass flux "
                           "per area such as 'g C m-2 yr-1' (set 'units' in the entry)")
    text = str(units).strip()
    s = _CARBON.sub(" ", text).replace("m^-2", "m-2").replace("m2", "m2 ")
    s = re.sub(r"/\s*m2\b", " m-2", s)
    per_month = bool(_MONTH.search(s))
    if per_month:
        s = _MONTH.sub("yr", s)
    s = re.sub(r"\s+", " ", s).strip()
    try:
        kg_factor, per_year = flux_factor(s)
    except UnitsError as err:
        raise ProductError(f"{where}: units {text!r} are not a carbon mass flux per area "
                           f"(expected e.g. 'g C m-2 yr-1', 'kg m-2 s-1', "
                           f"'g C m-2 month-1'): {err}") from None
    g_factor = kg_factor * 1000.0
    if per_month:
        return FluxUnits(text, g_factor, "month")
    return FluxUnits(text, g_factor, "yr" if per_year else "s")


def _norm(u: str) -> str:
    return re.sub(r"\s+", " ", str(u).strip().replace("°", "deg").replace("**", "")
                  .replace("^", "")).lower()


TEMPERATURE_UNITS: dict[str, float] = {
    # spelling -> offset added to get °C
    "k": -273.15, "kelvin": -273.15, "degk": -273.15,
    "degc": 0.0, "deg c": 0.0, "c": 0.0, "celsius": 0.0, "degrees_celsius": 0.0,
    "degree_celsius": 0.0,
}

# precipitation: spelling -> (factor to mm per <per>, per) with per in {"s", "day", "yr", "month"}
PRECIPITATION_UNITS: dict[str, tuple[float, str]] = {
    "kg m-2 s-1": (1.0, "s"), "kg/m2/s": (1.0, "s"), "kg m-2 s": (1.0, "s"),
    "mm s-1": (1.0, "s"), "mm/s": (1.0, "s"), "m s-1": (1000.0, "s"),
    "mm day-1": (1.0, "day"), "mm d-1": (1.0, "day"), "mm/day": (1.0, "day"),
    "kg m-2 day-1": (1.0, "day"),
    "mm yr-1": (1.0, "yr"), "mm/yr": (1.0, "yr"), "mm year-1": (1.0, "yr"),
    "mm/year": (1.0, "yr"), "mm a-1": (1.0, "yr"),
    "mm month-1": (1.0, "month"), "mm/month": (1.0, "month"), "mm mon-1": (1.0, "month"),
}

# soil organic carbon stock: spelling -> factor to g C m-2
SOC_STOCK_UNITS: dict[str, float] = {
    "t ha-1": 100.0, "t/ha": 100.0, "mg ha-1": 100.0, "mg/ha": 100.0, "tonnes/ha": 100.0,
    "t c ha-1": 100.0, "kg m-2": 1000.0, "kg/m2": 1000.0, "kg c m-2": 1000.0,
    "g m-2": 1.0, "g/m2": 1.0, "g c m-2": 1.0, "gc m-2": 1.0, "gc/m2": 1.0,
}


def temperature_offset(units: str, *, where: str = "") -> float:
    """Offset that converts a temperature in ``units`` to °C (K → −273.15)."""
    try:
        return TEMPERATURE_UNITS[_norm(units)]
    except KeyError:
        raise ProductError(f"{where}: temperature units {units!r} not recognised; expected "
                           "'K' (GSWP3 tas) or 'degC'") from None


def precipitation_factor(units: str, *, where: str = "") -> tuple[float, str]:
    """(factor, per) such that value × factor is in mm per ``per`` (s, day, yr, month);
    1 kg m-2 of water is 1 mm."""
    try:
        return PRECIPITATION_UNITS[_norm(units)]
    except KeyError:
        raise ProductError(f"{where}: precipitation units {units!r} not recognised; expected "
                           "'kg m-2 s-1' (GSWP3 pr), 'mm day-1' or 'mm yr-1'") from None


def soc_factor(units: str, *, where: str = "") -> float:
    """Factor from a soil organic carbon *stock* in ``units`` to g C m-2
    (t ha-1 = Mg ha-1 → ×100; kg m-2 → ×1000)."""
    key = _norm(units)
    if key in ("g/kg", "g kg-1", "dg/kg", "dg kg-1", "permille", "%"):
        raise ProductError(f"{where}: units {units!r} are a soil organic carbon *content* "
                           "(concentration), not a stock; use SoilGrids' organic carbon stock "
                           "layer (t ha-1) or give a stock in g C m-2")
    try:
        return SOC_STOCK_UNITS[key]
    except KeyError:
        raise ProductError(f"{where}: SOC stock units {units!r} not recognised; expected "
                           "'t ha-1' (SoilGrids), 'kg m-2' or 'g C m-2'") from None
