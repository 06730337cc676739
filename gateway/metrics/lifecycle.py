"""Retention and event-delivery series, from the shards' ``status`` replies (``lifecycle``).

Per shard and sink: ``shardreg_events_sent_total``, ``_failed_total``, ``_retried_total``,
``shardreg_events_queue_length``, ``shardreg_events_delivery_seconds`` (a summary: sum and
count, from the event's commit to the sink's acknowledgement) and ``_max``; per shard
``shardreg_events_dropped_total`` (outbox full) and the retention counters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric

_SINK_COUNTERS = (("sent", "Events a sink acknowledged"), ("failed", "Failed delivery attempts"),
                  ("retried", "Delivery attempts retried"), ("ignored", "Events a sink does not take (ignored types)"))
_RETENTION = (("deleted_tags", "shardreg_retention_deleted_tags", "Tags retention deleted"),
              ("deleted_manifests", "shardreg_retention_deleted_manifests", "Manifests retention deleted"),
              ("planned", "shardreg_retention_dry_run_deletions", "Deletions dry-run passes reported"),
              ("skipped", "shardreg_retention_skipped", "Planned deletions left alone (pushed or pulled meanwhile)"),
              ("passes", "shardreg_retention_passes", "Retention passes"))


class LifecycleCollector:
    def __init__(self, statuses: list[dict[str, Any] | None]) -> None:
        self.statuses = statuses

    def collect(self) -> Iterable[Metric]:
        counters = {key: Metric(f"shardreg_events_{key}", doc, "counter") for key, doc in _SINK_COUNTERS}
        queue = Metric("shardreg_events_queue_length", "Events waiting in the outbox for a sink", "gauge")
        latency = Metric("shardreg_events_delivery_seconds", "From the event's commit to its delivery", "summary")
        latency_max = Metric("shardreg_events_delivery_seconds_max", "Longest delivery so far", "gauge")
        dropped = Metric("shardreg_events_dropped", "Events dropped because the outbox was full", "counter")
        retention = {key: Metric(name, doc, "counter") for key, name, doc in _RETENTION}
        last = Metric("shardreg_retention_last_pass_timestamp_seconds", "When the last retention pass finished",
                      "gauge")
        for index, status in enumerate(self.statuses):
            lifecycle = (status or {}).get("lifecycle")
            if not lifecycle:
                continue
            shard = {"shard": str(index)}
            events = lifecycle.get("events")
            if events:
                dropped.add_sample("shardreg_events_dropped_total", shard, events.get("dropped", 0))
                for sink, stats in (events.get("sinks") or {}).items():
                    labels = {**shard, "sink": sink}
                    for key, metric in counters.items():
                        metric.add_sample(f"{metric.name}_total", labels, stats.get(key, 0))
                    queue.add_sample(queue.name, labels, stats.get("queued", 0))
                    latency.add_sample(f"{latency.name}_sum", labels, stats.get("latency_sum", 0.0))
                    latency.add_sample(f"{latency.name}_count", labels, stats.get("sent", 0))
                    latency_max.add_sample(latency_max.name, labels, stats.get("latency_max", 0.0))
            figures = lifecycle.get("retention") or {}
            for key, metric in retention.items():
                metric.add_sample(f"{metric.name}_total", shard, figures.get(key, 0))
            last.add_sample(last.name, shard, figures.get("last_finished", 0.0))
        return [*counters.values(), queue, latency, latency_max, dropped, *retention.values(), last]
