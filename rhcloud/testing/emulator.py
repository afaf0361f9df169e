"""A local GCS endpoint for tests, benchmarks and notebooks: ``gcp-storage-emulator`` on
loopback, serving the virtual world through the GCS JSON API exactly as ``gs://cmip6`` is
served, so the code under test is the code that runs against Pangeo.

Seeding: the emulator rewrites its whole object index on every upload (quadratic in the
number of objects: ~200 s for a 1,600-object world), so a world is *seeded* into the
emulator's disk store before it starts (files linked in place, object resources built with
the emulator's own constructors). Reads then go through HTTP like any other bucket; uploads
through the API still work (the tests upload through it too).

Listen backlog: the emulator serves one request at a time from a ``socketserver`` whose
backlog is 5. gcsfs and Dask open dozens of connections at once; the kernel drops the
connections beyond the backlog and clients resend them after 1 s, then 3 s, ... (100
concurrent reads took 108 s instead of 0.04 s). The emulator is therefore started through
this module with a backlog of 1,024; requests are still served one at a time, as before.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def seed_store(data_dir: Path, bucket: str, trees: dict[str, Path], base_url: str) -> int:
    """Lay out ``trees`` (object prefix → local file or directory) as objects of ``bucket``
    in the emulator's disk store under ``data_dir``. Returns the number of objects."""
    from gcp_storage_emulator import settings
    from gcp_storage_emulator.handlers.buckets import _make_bucket_resource
    from gcp_storage_emulator.handlers.objects import _checksums, _make_object_resource

    root = data_dir / settings.STORAGE_DIR
    objects: dict[str, dict] = {}
    for prefix, src in trees.items():
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            name = prefix if src.is_file() else f"{prefix.rstrip('/')}/{f.relative_to(src)}"
            name = name.lstrip("/")
            content = f.read_bytes()
            obj = _make_object_resource(base_url, bucket, name, "application/octet-stream",
                                        str(len(content)))
            objects[name] = _checksums(content, obj)
            _link_or_copy(f, root / bucket / name)
    meta = {"buckets": {bucket: _make_bucket_resource(bucket)}, "objects": {bucket: objects},
            "resumable": {}, "bucket_iam_policies": {}, "soft_deleted": {}}
    (root / ".meta").write_text(json.dumps(meta))
    return len(objects)


class GCSEmulator:
    """``with GCSEmulator(data_dir, seed={...}) as url:`` a GCS endpoint at ``url``."""

    def __init__(self, data_dir: str | Path, bucket: str = "cmip6",
                 seed: dict[str, Path] | None = None, port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.bucket = bucket
        self.seed = seed or {}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.seed:
            seed_store(self.data_dir, self.bucket, self.seed, self.url)
        cmd = [sys.executable, "-m", __name__, "-d", str(self.data_dir), "start",
               "--host", "127.0.0.1", "--port", str(self.port), "--default-bucket", self.bucket]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited with {self._proc.returncode}")
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1)
                return self.url
            except urllib.error.HTTPError:
                return self.url
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gcp-storage-emulator did not answer within 30 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def world_seed(world_root: Path) -> dict[str, Path]:
    """What a world puts in the bucket: its stores and its ``gs://`` catalog."""
    return {"": world_root / "cmip6",
            "pangeo-cmip6.json": world_root / "pangeo-cmip6.json",
            "pangeo-cmip6.csv": world_root / "pangeo-cmip6.csv"}


def _serve(argv: list[str]) -> int:
    """The ``gcp-storage-emulator`` command line, with a listen backlog that does not drop
    concurrent clients (see the module docstring)."""
    from http import server

    from gcp_storage_emulator.__main__ import main

    server.HTTPServer.request_queue_size = 1024
    return main(argv)


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
