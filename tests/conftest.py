"""Shared fixtures: a small virtual world (all 13 models, 4 years) on disk and served by a
local GCS emulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from rhcloud.config import Config  # noqa: E402
from rhcloud.world import WorldParams, generate_world  # noqa: E402

SMALL = WorldParams(years=(1989, 1992), truth_period=(1990, 1991), time_chunk=12,
                    observations="test")
SMALL_PERIOD = (1990, 1991)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("world"), SMALL)


@pytest.fixture(scope="session")
def truth(small_world) -> dict:
    return json.loads((small_world / "truth.json").read_text())


@pytest.fixture
def small_config(small_world) -> Config:
    return Config(catalog=str(small_world / "local-cmip6.json"), period=SMALL_PERIOD,
                  members="all", cluster={"kind": "local", "n_workers": 1})


@pytest.fixture(scope="session")
def gcs_world(small_world, tmp_path_factory):
    """The small world served at a local GCS endpoint; yields the endpoint URL."""
    from rhcloud.testing.emulator import GCSEmulator, world_seed

    with GCSEmulator(tmp_path_factory.mktemp("gcs"), seed=world_seed(small_world)) as url:
        yield url


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """A real dask-gateway server on loopback; yields (address, proxy_address, password)."""
    from rhcloud.testing.gateway import LocalGateway

    gw = LocalGateway(tmp_path_factory.mktemp("gateway"), password="planted-s3cr3t-Zq9",
                      environment={"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"})
    with gw as address:
        yield address, gw.proxy_address, gw.password
