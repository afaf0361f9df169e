"""A real dask-gateway on loopback for tests and notebooks: ``dask-gateway-server`` with the
UnsafeLocalBackend (clusters are local processes of this user) and the SimpleAuthenticator.

distributed ≥ 2026 has no ``dask-scheduler``/``dask-worker`` scripts, the gateway's default
commands, so the clusters run ``<venv>/bin/dask scheduler`` and ``dask worker``.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from rhcloud.testing.emulator import free_port

CONFIG = """
c.DaskGateway.address = "127.0.0.1:{api}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = {password!r}
c.Proxy.address = "127.0.0.1:{proxy}"
c.Proxy.tcp_address = "127.0.0.1:{tcp}"
c.LocalBackend.cluster_config_class = "dask_gateway_server.backends.local.LocalClusterConfig"
c.ClusterConfig.scheduler_cmd = [{dask!r}, "scheduler"]
c.ClusterConfig.worker_cmd = [{dask!r}, "worker"]
c.ClusterConfig.worker_cores = 1
c.ClusterConfig.worker_memory = "2 G"
c.ClusterConfig.cluster_max_workers = 4
c.ClusterConfig.environment = {env!r}
c.DaskGateway.log_level = "INFO"
"""


class LocalGateway:
    """``with LocalGateway(workdir, password) as address:`` a gateway at ``address``."""

    def __init__(self, workdir: str | Path, password: str = "rhcloud-test",
                 environment: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.password = password
        self.environment = dict(environment or {})
        self.api, self.proxy, self.tcp = free_port(), free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.proxy}"
        self.proxy_address = f"gateway://127.0.0.1:{self.tcp}"
        self._proc: subprocess.Popen | None = None

    def start(self) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        bindir = Path(sys.executable).parent
        cfg = self.workdir / "gateway_config.py"
        cfg.write_text(CONFIG.format(api=self.api, proxy=self.proxy, tcp=self.tcp,
                                     password=self.password, dask=str(bindir / "dask"),
                                     env=self.environment))
        exe = bindir / "dask-gateway-server"
        self._log = (self.workdir / "gateway.log").open("w")
        self._proc = subprocess.Popen([str(exe), "-f", str(cfg)], cwd=self.workdir,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dask-gateway-server exited with {self._proc.returncode}")
            try:  # through the proxy: both the proxy and the API server must answer
                with urllib.request.urlopen(f"{self.address}/api/health", timeout=1) as r:
                    if r.status == 200:
                        return self.address
            except (urllib.error.HTTPError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("dask-gateway-server did not answer within 60 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
