"""Gateway metrics: Prometheus text at ``extensions.metrics.prometheus.path`` (zot's extension).

``series`` the series themselves (depends on nothing in the project); ``settings`` the config;
``multiprocess`` the shared directory of the worker processes; ``labels`` route labels from the
route table; ``endpoint`` the middleware (:class:`~gateway.metrics.endpoint.Metrics`) and the
scrape. The shard client reports its round trips to the series through the observer it is given.

Switched on by ``extensions.metrics`` as in zot (``{"enable": true, "prometheus": {"path":
"/metrics"}}``; a section without ``enable`` counts as enabled, the path defaults to
``/metrics``). ``Metrics`` wraps the whole ASGI app, so one place sees every request: the
Quart routes and the plain-ASGI upload path alike. Route labels are the templates of the
gateway's route table (:mod:`gateway.routes`), never the raw path: label values stay bounded.

Series (``zot_`` where zot defines the metric, so zot dashboards work; ``shardreg_`` for ours):

====================================================  ===========================================
``zot_http_requests_total{method,route,code}``        requests served (zot labels ``method``,
                                                      ``code``; ``route`` added)
``zot_http_method_latency_seconds{method,route}``     histogram, request start → last body byte
``shardreg_http_received_bytes_total{method,route}``  request body bytes
``shardreg_http_sent_bytes_total{method,route}``      response body bytes
``shardreg_http_uploads_in_progress``                 upload-route requests being served (sum
                                                      over live workers)
``zot_repo_downloads_total{repo}``                    manifest GETs answered 200 (zot counts a
                                                      download when it serves a manifest)
``zot_repo_uploads_total{repo}``                      manifest PUTs answered 201
``shardreg_shard_request_seconds{op}``                histogram, ZeroMQ request → reply per op
``shardreg_shard_request_timeouts_total{op}``         ZeroMQ requests that got no reply in time
``shardreg_build_info{version,revision}``             always 1: the running build
``shardreg_shard_up{shard}``, ``_ready{shard}``       the shard answered ``status`` at scrape
                                                      time; it can serve writes (its readiness)
``process_*{role,shard,pid}``                         CPU, RSS, open fds... of each gateway worker,
                                                      the gateway, the supervisor, (below) shards
``shardreg_shard_{lmdb,blob}_bytes{shard}``,          each shard's storage and free disk, from its
``_blob_count``, ``_disk_free_bytes``,                ``status`` reply (2 s timeout), only when
``_uploads_in_progress``, ``_damaged_objects``        the shards have no listener of their own
====================================================  ===========================================

The last rows are added at scrape time by :mod:`gateway.metrics.cluster`, so that ``shardreg serve``
needs no port but the gateway's. When the shards serve their own ``/metrics``
(``cluster.shardMetricsPort``, as in Kubernetes) their storage, op latency histograms
(``shardreg_shard_op_seconds{shard,op}``) and process figures are there, and the gateway does not
repeat them (no series is scraped twice).

A request that ends without a response (client gone) is counted with code ``499``.

Hypercorn runs several worker processes: ``multiprocess.multiprocess_dir`` (called by the master in
``gateway/server.py``) gives them a fresh ``PROMETHEUS_MULTIPROC_DIR`` they inherit, so every
worker writes its figures there and a scrape answered by any worker sums them all
(prometheus-client multiprocess mode). Live gauges of workers that died are dropped at the next
scrape (``mark_process_dead``). A ``PROMETHEUS_MULTIPROC_DIR`` already in the environment (the
Helm chart sets one) is used as the parent of the fresh directory, never reused as is: stale
files of an earlier gateway would be summed in.

Access (zot's ``http.accessControl.metrics{users, anonymousPolicy}``, decided by
``AccessControl.authorize(..., "metrics")``): without authentication
configured the endpoint is open; with authentication but no ``accessControl`` any authenticated
user may read it; with ``accessControl`` only the listed ``users`` may, and anonymous callers only
when ``anonymousPolicy`` contains ``read``.
"""

