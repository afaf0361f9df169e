"""Dask clients for a run: a LocalCluster sized to the machine (default), an existing
scheduler by address, or a dask-gateway cluster. The cluster a run starts is shut down when
the run ends, also on errors; a client the caller already has is used as is.

``cluster:`` options by kind (YAML; typed and checked in ``rhcloud.config.ClusterOptions``):

- ``local``: ``n_workers``, ``threads_per_worker``, ``memory_limit``, ``processes``;
- ``address``: ``address: tcp://host:8786``;
- ``gateway``: ``address``, ``proxy_address`` (default: dask config, i.e. the hub's
  ``DASK_GATEWAY__ADDRESS``/``DASK_GATEWAY__PROXY_ADDRESS``), ``auth`` (see
  ``gateway_auth``), ``cluster_options`` (what the gateway exposes, e.g. ``worker_cores``,
  ``worker_memory``, ``image``), ``workers`` (fixed size) or ``adapt: {minimum, maximum}``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from rhcloud.config import ClusterOptions


def _local(options: ClusterOptions):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=int(options.n_workers or os.cpu_count() or 1),
        threads_per_worker=int(options.threads_per_worker),
        processes=bool(options.processes),
        memory_limit=options.memory_limit,
        dashboard_address=options.dashboard_address,
    )
    return Client(cluster), cluster.close


# A worker's heartbeat in flight while a LocalCluster shuts down finds the scheduler's
# stream closed, and distributed logs that with a full traceback on the run's stderr
# (dask/distributed#7105, open): noise at the end of a run that went as it should.
_HEARTBEAT_RACE = "Failed to communicate with scheduler during heartbeat"


class _ShutdownHeartbeat(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_HEARTBEAT_RACE)


def quiet_shutdown_heartbeats(quiet: bool = True) -> None:
    """Drop (``quiet=False``: log again) the worker's heartbeat-failure record in this
    process. Run on each worker of a LocalCluster just before it is shut down, and only
    then, so that a scheduler lost during a run is still logged."""
    log = logging.getLogger("distributed.worker")
    for f in [f for f in log.filters if isinstance(f, _ShutdownHeartbeat)]:
        log.removeFilter(f)
    if quiet:
        log.addFilter(_ShutdownHeartbeat())


def gateway_auth(spec: str | dict[str, Any] | None):
    """A dask-gateway auth object from the config: None (the gateway's configured default,
    e.g. ``DASK_GATEWAY__AUTH__TYPE`` on a hub), a type name (``jupyterhub`` reads
    ``JUPYTERHUB_API_TOKEN``, ``kerberos``), or ``{type: basic, username: ...,
    password_env: VAR}``. Secrets are read from the environment, never from the config."""
    if spec is None:
        return None
    from dask_gateway.auth import BasicAuth, get_auth

    if isinstance(spec, str):
        return get_auth(spec)
    kind = spec.get("type", "basic")
    if kind != "basic":
        return get_auth(kind)
    var = spec.get("password_env")
    if "password" in spec:
        raise ValueError("cluster.auth: put the password in an environment variable and name "
                         "it with password_env; a config never holds secrets")
    password = os.environ.get(var) if var else None
    if var and password is None:
        raise ValueError(f"cluster.auth: environment variable {var} is not set")
    return BasicAuth(spec.get("username"), password)


def _gateway(options: ClusterOptions):
    from dask_gateway import Gateway

    gateway = Gateway(address=options.address, proxy_address=options.proxy_address,
                      public_address=options.public_address, auth=gateway_auth(options.auth))
    cluster = gateway.new_cluster(**dict(options.cluster_options or {}))
    try:
        adapt = options.adapt
        if adapt:
            cluster.adapt(minimum=int(adapt.get("minimum", 1)),
                          maximum=int(adapt.get("maximum", 10)))
        else:
            cluster.scale(int(options.workers))
        client = cluster.get_client()
        if not adapt and options.wait_for_workers:
            client.wait_for_workers(1, timeout=float(options.timeout))
    except BaseException:
        _shut(cluster, gateway)
        raise
    return client, lambda: _shut(cluster, gateway)


def _shut(cluster, gateway) -> None:
    cluster.shutdown()  # also closes the cluster's own Gateway
    gateway.close()
    for g in (cluster.gateway, gateway):
        forget_closed_gateway(g)


def forget_closed_gateway(gateway) -> None:
    """Make a closed ``dask_gateway.Gateway``'s ``__del__`` a no-op.

    ``Gateway.__del__`` closes it again, and a second ``close()`` raises once the loop runner
    has stopped (dask-gateway 2026.3). The error is raised wherever garbage collection
    happens to run: inside an ``ast.parse`` on CPython 3.11 it broke the parse ("AST
    constructor recursion depth mismatch"). Without its loop runner, ``__del__`` skips
    ``close()``; the runner was stopped by the first ``close()``."""
    vars(gateway).pop("_loop_runner", None)


@contextmanager
def client_for(cluster: ClusterOptions | dict[str, Any] | None,
               client=None) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for the ``cluster`` section of a config.

    ``client`` (e.g. the one a notebook already has) is used unchanged and not closed."""
    if client is not None:
        yield client
        return
    options = cluster if isinstance(cluster, ClusterOptions) else \
        ClusterOptions(**(cluster or {}))
    if options.kind == "local":
        client, owned = _local(options)
    elif options.kind == "gateway":
        client, owned = _gateway(options)
    else:  # address (ClusterOptions checked the kind and the address)
        from distributed import Client

        client, owned = Client(options.address), None  # not ours to stop
    try:
        yield client
    finally:
        if options.kind == "local":
            with suppress(Exception):  # a worker already gone has nothing left to log
                client.run(quiet_shutdown_heartbeats)
        client.close()
        if owned is not None:  # stop what this run started (LocalCluster, gateway cluster)
            owned()
        if options.kind == "local":  # in-process workers (processes: false) log here
            quiet_shutdown_heartbeats(quiet=False)
