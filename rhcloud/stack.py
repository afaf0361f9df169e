"""Stack per-dataset fields on the reference grid into one Dataset per variable.

Datasets run along a ``dataset`` dimension whose coordinates ``source_id``, ``member_id``,
``version`` and ``zstore`` identify each one (members differ between models, so a dense
source_id × member_id array would be mostly empty).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

ID_COORDS = ("source_id", "member_id", "version", "zstore")


def stack_fields(fields: list[xr.Dataset], variable: str) -> xr.Dataset:
    """``variable`` (dataset, lat, lon) in g m-2 yr-1 and ``{variable}_landfrac`` from the
    regridded fields of that variable, ordered by source_id then member_id."""
    chosen = [f for f in fields if f.attrs.get("variable_id") == variable]
    if not chosen:
        return xr.Dataset()
    chosen.sort(key=lambda f: (f.attrs["source_id"], f.attrs["member_id"]))
    flux = xr.concat([f["flux"] for f in chosen], dim="dataset", coords="minimal",
                     compat="override", join="override")
    land = xr.concat([f["landfrac"] for f in chosen], dim="dataset", coords="minimal",
                     compat="override", join="override")
    coords = {k: ("dataset", np.array([f.attrs.get(k, "") for f in chosen], dtype=str))
              for k in ID_COORDS}
    out = xr.Dataset({
        variable: flux.assign_attrs(units="g m-2 yr-1",
                                    long_name=f"{variable} climatology on the reference grid",
                                    cell_methods="area: mean where land time: mean"),
        f"{variable}_landfrac": land.assign_attrs(units="1",
                                                  long_name="land fraction carrying the flux"),
    }).assign_coords(coords)
    out[variable].attrs["period"] = chosen[0].attrs.get("period", "")
    return out
