"""The gateway's Prometheus series (names and labels in :mod:`gateway.metrics`).

Depends on nothing else in the project: the HTTP middleware records requests here, and the
shard client reports its round trips here through the observer it is given
(:meth:`Series.observe_shard_call`, :meth:`Series.shard_timeout`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Request latency buckets (seconds): small manifest reads up to multi-GiB blob transfers.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)
#: ZeroMQ round trips: sub-millisecond metadata ops up to fsync'd commits of large blobs.
SHARD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
#: The route label whose manifest GETs and PUTs count as downloads and uploads.
MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"


class Series:
    """One worker's series, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("zot_http_requests", "HTTP requests served", ["method", "route", "code"], registry=r)
        self.latency = Histogram("zot_http_method_latency_seconds", "Time to serve an HTTP request",
                                 ["method", "route"], buckets=HTTP_BUCKETS, registry=r)
        self.received = Counter("shardreg_http_received_bytes", "Request body bytes received",
                                ["method", "route"], registry=r)
        self.sent = Counter("shardreg_http_sent_bytes", "Response body bytes sent", ["method", "route"], registry=r)
        self.uploads = Gauge("shardreg_http_uploads_in_progress", "Blob upload requests being served",
                             multiprocess_mode="livesum", registry=r)
        self.repo_downloads = Counter("zot_repo_downloads", "Total number of times an image was downloaded",
                                      ["repo"], registry=r)
        self.repo_uploads = Counter("zot_repo_uploads", "Total number of times an image was uploaded",
                                    ["repo"], registry=r)
        self.shard_latency = Histogram("shardreg_shard_request_seconds", "ZeroMQ request to reply, per wire op",
                                       ["op"], buckets=SHARD_BUCKETS, registry=r)
        self.shard_timeouts = Counter("shardreg_shard_request_timeouts", "ZeroMQ requests not answered in time",
                                      ["op"], registry=r)

    def record_request(self, method: str, route: str, repo: str | None, status: int, received: int, sent: int,
                       seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if received:
            self.received.labels(method, route).inc(received)
        if sent:
            self.sent.labels(method, route).inc(sent)
        if repo is not None and route == MANIFEST_ROUTE:
            if method == "GET" and status == 200:
                self.repo_downloads.labels(repo).inc()
            elif method == "PUT" and status == 201:
                self.repo_uploads.labels(repo).inc()

    # -- the shard client's observer ----------------------------------------------------------------
    def observe_shard_call(self, op: str, seconds: float) -> None:
        """A reply to ``op`` arrived ``seconds`` after the request was sent."""
        self.shard_latency.labels(op).observe(seconds)

    def shard_timeout(self, op: str) -> None:
        self.shard_timeouts.labels(op).inc()
