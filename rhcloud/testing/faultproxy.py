"""A fault-injecting HTTP proxy for an object-store endpoint (tests and benchmarks).

Put it in front of the local GCS emulator (``rhcloud.testing.emulator``) and point gcsfs at
it exactly as at the emulator, with ``storage_options={"token": "anon", "endpoint_url":
proxy.url}`` (or ``STORAGE_EMULATOR_HOST``)::

    with FaultProxy(emulator_url, fault_rate=0.15, seed=1) as url:
        run(Config(..., storage_options={"token": "anon", "endpoint_url": url}))

Every request is forwarded to the upstream endpoint unchanged, after an optional fixed
``latency`` (seconds, slept in the request's own thread, so concurrent requests overlap as
they would against a distant bucket). A fraction ``fault_rate`` of requests is answered with
a fault instead:

- ``"503"``: ``503 Service Unavailable`` with a GCS-style JSON error body (any status can be
  given as ``fault="500"``, ``"429"``, ...);
- ``"drop"``: the connection is closed without an answer (a reset, as a dying load
  balancer);
- ``"delay"``: the request is held for ``fault_delay`` seconds and then forwarded (a slow
  or, with a client timeout below ``fault_delay``, a timed-out request).

Faults are deterministic for a ``seed`` whatever the order in which concurrent requests
arrive: whether the n-th attempt of a request (method, path and query, ``Range``) fails is a
hash of (seed, request, n). ``max_consecutive`` caps the faults in a row for one request, so
a client that retries at least ``max_consecutive + 1`` times always gets through (gcsfs tries
6 times); ``None`` removes the cap. ``methods`` limits faults to some HTTP methods and
``match`` (a callable on the request path) to some objects.

Counters (``requests``, ``faults``, ``by_kind``, ``statuses``) and ``fault_log`` (method,
path, fault of each injected fault) let tests assert that faults were really injected, and
where; ``reset_counts()`` zeroes them, ``configure(...)`` changes the fault settings of a
running proxy.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# not forwarded in either direction: they describe one hop, not the message
_HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                "trailer", "transfer-encoding", "upgrade", "proxy-connection"}
FAULT_KINDS = ("drop", "delay")  # besides an HTTP status given as digits
FAULT_LOG_MAX = 100_000


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients open at once (the listen backlog)


class FaultProxy:
    """A threaded HTTP proxy on loopback in front of ``upstream`` (``http://host:port``).

    ``with FaultProxy(...) as url`` starts it and gives its URL; ``start()``/``stop()`` too.
    """

    def __init__(self, upstream: str, *, fault_rate: float = 0.0, fault: str = "503",
                 seed: int = 0, latency: float = 0.0, fault_delay: float = 5.0,
                 max_consecutive: int | None = 2, methods: Iterable[str] | None = None,
                 match: Callable[[str], bool] | None = None, host: str = "127.0.0.1",
                 port: int = 0, upstream_timeout: float = 120.0):
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._up_host = parsed.hostname
        self._up_port = parsed.port or 80
        self.upstream_timeout = upstream_timeout
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.configure(fault_rate=fault_rate, fault=fault, seed=seed, latency=latency,
                       fault_delay=fault_delay, max_consecutive=max_consecutive,
                       methods=methods, match=match)
        self.reset_counts()

    # ------------------------------------------------------------------ configuration

    def configure(self, **settings) -> None:
        """Change fault settings (the constructor's keywords) of a running proxy."""
        allowed = {"fault_rate", "fault", "seed", "latency", "fault_delay", "max_consecutive",
                   "methods", "match"}
        unknown = set(settings) - allowed
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}; known: {sorted(allowed)}")
        if "fault" in settings:
            fault = str(settings["fault"])
            if fault not in FAULT_KINDS and not (fault.isdigit() and 400 <= int(fault) < 600):
                raise ValueError(f"fault must be an HTTP error status or one of {FAULT_KINDS}, "
                                 f"got {fault!r}")
            settings["fault"] = fault
        if "fault_rate" in settings and not 0.0 <= float(settings["fault_rate"]) <= 1.0:
            raise ValueError("fault_rate must lie in [0, 1]")
        if "methods" in settings and settings["methods"] is not None:
            settings["methods"] = frozenset(m.upper() for m in settings["methods"])
        with self._lock:
            for k, v in settings.items():
                setattr(self, k, v)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.faults = 0
            self.by_kind: Counter[str] = Counter()
            self.statuses: Counter[int] = Counter()
            self.methods_seen: Counter[str] = Counter()
            self.fault_log: list[tuple[str, str, str]] = []  # (method, path, fault)
            self._attempts: Counter[tuple] = Counter()
            self._streak: Counter[tuple] = Counter()

    def counts(self) -> dict:
        """A snapshot of the counters."""
        with self._lock:
            return {"requests": self.requests, "faults": self.faults,
                    "by_kind": dict(self.by_kind), "statuses": dict(self.statuses),
                    "methods": dict(self.methods_seen)}

    # ------------------------------------------------------------------ decisions

    def _decide(self, method: str, path: str, range_header: str | None) -> str | None:
        """The fault for this request (None: forward it); counts it."""
        key = (method, path, range_header or "")
        with self._lock:
            self.requests += 1
            self.methods_seen[method] += 1
            n = self._attempts[key]
            self._attempts[key] += 1
            eligible = (self.fault_rate > 0
                        and (self.methods is None or method in self.methods)
                        and (self.match is None or self.match(path))
                        and (self.max_consecutive is None
                             or self._streak[key] < self.max_consecutive))
            fault = None
            if eligible:
                digest = hashlib.blake2b(f"{self.seed}|{method}|{path}|{key[2]}|{n}".encode(),
                                         digest_size=8).digest()
                if int.from_bytes(digest, "big") / 2.0**64 < self.fault_rate:
                    fault = self.fault
            if fault is None:
                self._streak[key] = 0
            else:
                self._streak[key] += 1
                self.faults += 1
                self.by_kind[fault] += 1
                if len(self.fault_log) < FAULT_LOG_MAX:
                    self.fault_log.append((method, path, fault))
            return fault

    def _count_status(self, status: int) -> None:
        with self._lock:
            self.statuses[status] += 1

    # ------------------------------------------------------------------ forwarding

    def _forward(self, method: str, path: str, headers: list[tuple[str, str]],
                 body: bytes | None) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self._up_host, self._up_port,
                                          timeout=self.upstream_timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            if body is not None and not any(k.lower() == "content-length" for k, _ in headers):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def _body(self) -> bytes | None:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(parts)
                length = self.headers.get("Content-Length")
                return self.rfile.read(int(length)) if length else None

            def _send(self, status: int, reason: str, headers, data: bytes) -> None:
                self.send_response_only(status, reason)
                has_length = False
                for k, v in headers:
                    low = k.lower()
                    if low in _HOP_HEADERS:
                        continue
                    if low == "content-length":
                        if self.command == "HEAD":
                            has_length = True
                            self.send_header(k, v)
                        continue
                    self.send_header(k, v)
                if self.command != "HEAD" or not has_length:
                    self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    if self.command != "HEAD" and data:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client hung up
                    self.close_connection = True
                proxy._count_status(status)

            def _handle(self) -> None:
                body = self._body()
                with proxy._lock:
                    latency, fault_delay = proxy.latency, proxy.fault_delay
                if latency > 0:
                    time.sleep(latency)
                fault = proxy._decide(self.command, self.path, self.headers.get("Range"))
                if fault == "drop":
                    self.close_connection = True
                    proxy._count_status(0)
                    return
                if fault == "delay":
                    time.sleep(fault_delay)
                elif fault is not None:
                    status = int(fault)
                    payload = json.dumps({"error": {
                        "code": status, "message": "fault injected by rhcloud FaultProxy",
                        "errors": [{"reason": "backendError", "domain": "global",
                                    "message": "fault injected"}]}}).encode()
                    self._send(status, "Injected Fault",
                               [("Content-Type", "application/json; charset=UTF-8")], payload)
                    return
                headers = [(k, v) for k, v in self.headers.items()
                           if k.lower() not in _HOP_HEADERS and k.lower() != "host"]
                headers.insert(0, ("Host", f"{proxy._up_host}:{proxy._up_port}"))
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                try:
                    status, reason, up_headers, data = proxy._forward(
                        self.command, self.path, headers, body)
                except OSError as exc:  # upstream gone: say so as a gateway would
                    msg = json.dumps({"error": {"code": 502, "message": str(exc)}}).encode()
                    self._send(502, "Bad Gateway", [("Content-Type", "application/json")],
                               msg)
                    return
                self._send(status, reason, up_headers, data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        return Handler

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        if self._server is None:
            server = _Server((self._host, self._port), self._handler())
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever,
                                            name="rhcloud-fault-proxy", daemon=True)
            self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
