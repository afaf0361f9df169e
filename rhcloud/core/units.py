"""Mass-flux units: recognise the ways CMIP6 and products write a carbon mass flux and
convert to kg m-2 s-1.

A small parser rather than pint: the vocabulary is finite (mass / area / time), and a
per-year unit needs the dataset's own calendar year, which only the caller knows.
"""

from __future__ import annotations

import re

from rhcloud.errors import RhcloudError

MASS = {"kg": 1.0, "g": 1e-3, "mg": 1e-6, "Mg": 1e3, "t": 1e3, "Pg": 1e12, "Gg": 1e6,
        "kgC": 1.0, "gC": 1e-3}
TIME_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "d": 86400.0, "day": 86400.0, "h": 3600.0,
          "hr": 3600.0}
YEAR = {"yr", "year", "a", "y"}
_TOKEN = re.compile(r"^(?P<u>[A-Za-z]+)(?P<p>[-+]?\d+)?$")


class UnitsError(RhcloudError):
    """Units that are not a convertible carbon mass flux."""


def _tokens(units: str) -> list[tuple[str, int]]:
    text = units.replace("/", " / ").replace("**", "").replace("^", "").replace(".", " ")
    out, sign = [], 1
    for tok in text.split():
        if tok == "/":
            sign = -1
            continue
        m = _TOKEN.match(tok)
        if not m:
            raise UnitsError(f"cannot parse units {units!r}")
        out.append((m["u"], sign * int(m["p"] or 1)))
    return out


def flux_factor(units: str) -> tuple[float, bool]:
    """(factor, per_year) such that value × factor is in kg m-2 s-1, or, when ``per_year``
    is true, in kg m-2 per year (the caller divides by its calendar's year length in s).
    Raises UnitsError naming the units when they are not a mass flux per area."""
    if not units or not str(units).strip():
        raise UnitsError("units attribute is missing")
    mass = area = None
    time: float | None = None
    per_year = False
    for u, p in _tokens(str(units)):
        if u in MASS and p == 1 and mass is None:
            mass = MASS[u]
        elif u in ("m", "km") and p == -2 and area is None:
            area = 1.0 if u == "m" else 1e-6
        elif u in TIME_S and p == -1 and time is None and not per_year:
            time = TIME_S[u]
        elif u in YEAR and p == -1 and time is None and not per_year:
            per_year = True
        else:
            raise UnitsError(f"units {units!r} are not a carbon mass flux per area "
                             "(expected e.g. 'kg m-2 s-1')")
    if mass is None or area is None or (time is None and not per_year):
        raise UnitsError(f"units {units!r} are not a carbon mass flux per area "
                         "(expected e.g. 'kg m-2 s-1')")
    return mass * area / (time or 1.0), per_year
