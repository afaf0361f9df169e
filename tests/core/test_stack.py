"""Stacking per-dataset fields: variables aligned by model and member, never by position."""

from __future__ import annotations

import numpy as np
import xarray as xr

from rhcloud.core.stack import align_stacks, present, stack_fields


def _field(var, sid, mid, value):
    return xr.Dataset({"flux": (("lat", "lon"), np.full((2, 3), value)),
                       "landfrac": (("lat", "lon"), np.ones((2, 3)))},
                      coords={"lat": [0.0, 1.0], "lon": [0.0, 1.0, 2.0]},
                      attrs={"variable_id": var, "source_id": sid, "member_id": mid,
                             "version": "v1", "zstore": f"gs://x/{sid}/{mid}/{var}/"})


def test_a_member_missing_one_variable_keeps_the_others_aligned():
    fields = [_field("rh", "A", "r1", 1.0), _field("rh", "A", "r2", 2.0),
              _field("rh", "B", "r1", 3.0),
              _field("npp", "A", "r1", 10.0), _field("npp", "B", "r1", 30.0)]  # A r2 npp failed
    ds = align_stacks([stack_fields(fields, "rh"), stack_fields(fields, "npp")])
    assert list(ds["dataset"].values) == ["A r1", "A r2", "B r1"]
    assert list(ds["source_id"].values) == ["A", "A", "B"]
    assert list(ds["member_id"].values) == ["r1", "r2", "r1"]
    np.testing.assert_array_equal(ds["rh"].isel(lat=0, lon=0), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ds["npp"].isel(lat=0, lon=0), [10.0, np.nan, 30.0])
    assert list(ds["npp_zstore"].values) == ["gs://x/A/r1/npp/", "", "gs://x/B/r1/npp/"]
    assert list(ds["rh_zstore"].values) == [f"gs://x/{s}/{m}/rh/" for s, m in
                                            [("A", "r1"), ("A", "r2"), ("B", "r1")]]
    npp = present(ds, "npp")
    assert list(npp["dataset"].values) == ["A r1", "B r1"]
    assert present(ds, "rh").sizes["dataset"] == 3


def test_a_member_with_only_npp():
    fields = [_field("rh", "A", "r1", 1.0), _field("npp", "A", "r1", 10.0),
              _field("npp", "C", "r1", 5.0)]
    ds = align_stacks([stack_fields(fields, "rh"), stack_fields(fields, "npp")])
    assert list(ds["dataset"].values) == ["A r1", "C r1"]
    assert list(present(ds, "rh")["source_id"].values) == ["A"]
    assert ds["rh_zstore"].values.tolist() == ["gs://x/A/r1/rh/", ""]


def test_one_variable_and_none():
    fields = [_field("rh", "B", "r1", 3.0), _field("rh", "A", "r1", 1.0)]
    ds = align_stacks([stack_fields(fields, "rh"), stack_fields(fields, "npp")])
    assert list(ds["dataset"].values) == ["A r1", "B r1"] and "npp" not in ds
    assert align_stacks([stack_fields(fields, "npp")]).sizes == {}
