"""The test object store: fake-gcs-server seeded from a directory (no upload loop), serving
the GCS JSON API to gcsfs, concurrently, with writes kept off the seeded files."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import gcsfs
import pytest

from rhcloud.testing.emulator import GCSEmulator, binary, seed_store


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    for i in range(120):
        p = src / "CMIP6" / f"m{i % 4}" / "rh" / f"c{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(100 + i))
    (tmp_path / "cat.json").write_text('{"catalog_file": "gs://cmip6/cat.csv"}')
    return src, tmp_path / "cat.json"


def test_binary_is_executable():
    assert os.access(binary(), os.X_OK)


def test_seeded_bucket_is_served_to_gcsfs(tree, tmp_path):
    src, cat = tree
    files = sorted(p for p in src.rglob("*") if p.is_file())
    with GCSEmulator(tmp_path / "gcs", seed={"": src, "pangeo.json": cat}) as url:
        fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=url)
        names = fs.find("cmip6")
        assert len(names) == len(files) + 1 and "cmip6/pangeo.json" in names
        assert fs.cat("cmip6/pangeo.json") == cat.read_bytes()
        # many clients at once, as gcsfs and Dask open them
        with ThreadPoolExecutor(32) as ex:
            got = list(ex.map(lambda f: fs.cat(f"cmip6/{f.relative_to(src)}"), files))
        assert got == [f.read_bytes() for f in files]


def test_writes_stay_in_the_server(tree, tmp_path):
    """Uploads and overwrites go to the server's memory, never to the seeded (hard-linked)
    files of the world on disk; a second, empty bucket takes outputs."""
    src, _ = tree
    target = next(p for p in src.rglob("*") if p.is_file())
    before = target.read_bytes()
    name = f"cmip6/{target.relative_to(src)}"
    with GCSEmulator(tmp_path / "gcs", seed={"": src}) as url, \
            GCSEmulator(tmp_path / "scratch", bucket="scratch") as scratch:
        fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=url)
        fs.pipe(name, b"overwritten")
        assert fs.cat(name) == b"overwritten"
        big = os.urandom(9 * 2**20)  # above gcsfs's block size: a resumable upload
        fs.pipe("cmip6/new/big.bin", big)
        assert fs.cat("cmip6/new/big.bin") == big
        out = gcsfs.GCSFileSystem(token="anon", endpoint_url=scratch)
        assert out.find("scratch") == []
        out.pipe("scratch/runs/a/t.csv", b"a,b\n")
        assert out.find("scratch") == ["scratch/runs/a/t.csv"]
    assert target.read_bytes() == before


def test_seed_store_lays_out_objects(tree, tmp_path):
    src, cat = tree
    n = seed_store(tmp_path / "data", "cmip6", {"": src, "x/cat.json": cat})
    assert n == sum(1 for p in src.rglob("*") if p.is_file()) + 1
    assert (tmp_path / "data" / "cmip6" / "x" / "cat.json").read_bytes() == cat.read_bytes()
    with pytest.raises(ValueError, match="no object name"):
        seed_store(tmp_path / "d2", "b", {"": cat})
