"""Dask clients for a run: a LocalCluster sized to the machine (default), an existing
scheduler by address, or a dask-gateway cluster. The cluster a run starts is shut down when
the run ends, also on errors; a client the caller already has is used as is."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _local(options: dict[str, Any]):
    from distributed import Client, LocalCluster

    n = int(options.get("n_workers", os.cpu_count() or 1))
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=int(options.get("threads_per_worker", 1)),
        processes=bool(options.get("processes", True)),
        memory_limit=options.get("memory_limit", "auto"),
        dashboard_address=options.get("dashboard_address", ":0"),
    )
    return Client(cluster), cluster


@contextmanager
def client_for(cluster: dict[str, Any] | None, client=None) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for the ``cluster`` section of a config.

    ``client`` (e.g. the one a notebook already has) is used unchanged and not closed."""
    if client is not None:
        yield client
        return
    options = dict(cluster or {"kind": "local"})
    kind = options.pop("kind", "local")
    if kind == "local":
        client, owned = _local(options)
    elif kind == "address":
        from distributed import Client

        if "address" not in options:
            raise ValueError("cluster: kind 'address' needs an 'address' (tcp://host:port)")
        client, owned = Client(options["address"]), None
    else:
        raise ValueError(f"cluster: unknown kind {kind!r}; expected local, address or gateway")
    try:
        yield client
    finally:
        client.close()
        if owned is not None:
            owned.close()
