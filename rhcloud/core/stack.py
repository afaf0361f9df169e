"""Stack per-dataset fields on the reference grid into one Dataset per variable.

Datasets run along a ``dataset`` dimension labelled ``"<source_id> <member_id>"``, with
``source_id`` and ``member_id`` coordinates (members differ between models, so a dense
source_id × member_id array would be mostly empty) and, per variable, the store it came
from (``rh_zstore``, ``rh_version``, ``npp_zstore``, ``npp_version``). Variables are aligned
on the label: a member whose ``npp`` failed while its ``rh`` succeeded keeps its ``rh`` and has
an all-NaN ``npp`` with an empty ``npp_zstore`` (:func:`present` selects what exists).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

ID_COORDS = ("source_id", "member_id")
STORE_COORDS = ("zstore", "version")


def label(attrs: dict) -> str:
    return f"{attrs['source_id']} {attrs['member_id']}"


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
    coords.update({f"{variable}_{k}": ("dataset", np.array([f.attrs.get(k, "") for f in chosen],
                                                          dtype=str)) for k in STORE_COORDS})
    coords["dataset"] = [label(f.attrs) for f in chosen]
    out = xr.Dataset({
        variable: flux.assign_attrs(units="g m-2 yr-1",
                                    long_name=f"{variable} climatology on the reference grid",
                                    cell_methods="area: mean where land time: mean"),
        f"{variable}_landfrac": land.assign_attrs(units="1",
                                                  long_name="land fraction carrying the flux"),
    }).assign_coords(coords)
    out[variable].attrs["period"] = chosen[0].attrs.get("period", "")
    return out


def align_stacks(stacks: list[xr.Dataset]) -> xr.Dataset:
    """One Dataset from per-variable stacks: the union of their datasets (sorted), a missing
    variable's field NaN and its store coordinates empty."""
    stacks = [s for s in stacks if s.sizes.get("dataset")]
    if not stacks:
        return xr.Dataset()
    labels = sorted(set().union(*(s["dataset"].values.tolist() for s in stacks)))
    ids = {}
    for s in stacks:
        for lab, sid, mid in zip(s["dataset"].values, s["source_id"].values,
                                 s["member_id"].values, strict=True):
            ids[str(lab)] = (str(sid), str(mid))
    out = []
    for s in stacks:
        fill = {name: "" for name in s.coords if name not in ("dataset", "lat", "lon")
                and s[name].dims == ("dataset",)}
        out.append(s.drop_vars(list(ID_COORDS)).reindex(dataset=labels, fill_value={
            **fill, **{v: np.nan for v in s.data_vars}}))
    merged = xr.merge(out, compat="override", join="exact")
    return merged.assign_coords({k: ("dataset", np.array([ids[lab][i] for lab in labels],
                                                        dtype=str))
                                 for i, k in enumerate(ID_COORDS)})


def present(results: xr.Dataset, variable: str, of: str | None = None) -> xr.DataArray:
    """``results[variable]`` over the datasets that have it (its store coordinate set);
    ``of`` names the variable whose stores count (e.g. ``residual`` of ``rh``)."""
    field = results[variable]
    store = f"{of or variable}_zstore"
    if store not in results.coords:
        return field
    return field.isel(dataset=np.flatnonzero(results[store].values != ""))
