"""The Grafana dashboard and the Prometheus alert rules: valid, in the chart, and about real series.

The dashboard is one JSON file kept twice (``helm/shardreg/dashboards/shardreg.json``, which the chart's
optional ConfigMap embeds, and ``docs/grafana-dashboard.json``); the alerts are the chart's optional
PrometheusRule. Every PromQL expression of both must name only series the registry really exports:
the names come from scraping a running cluster's gateway and shard after a push, a pull and a shard
timeout, so that every series exists. Rules pass ``promtool check rules`` (Debian package
``prometheus``; CI installs it, a missing promtool fails) and behave as intended under
``promtool test rules``; the dashboard's expressions go through promtool too, as recording rules.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from deploy_checks import check_cluster
from deploy_support import CHART, NAMESPACE, REPO, by_kind, helm_template, one, run, validate_objects
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Cluster, free_port
from tests.oci import OCI_MANIFEST, push_image

DASHBOARD = CHART / "dashboards" / "shardreg.json"
DOCS_DASHBOARD = REPO / "docs" / "grafana-dashboard.json"

#: Series the dashboard and the rules use that the registry does not export yet (none: issue 11 item 9
#: added disk free per shard). Add a name here only while its series is being built.
PLANNED: frozenset[str] = frozenset()
#: Series Prometheus itself adds to every scrape target.
PROMETHEUS_BUILTIN = frozenset({"up"})

MONITORING_VALUES: dict[str, Any] = {
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Registries"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"},
                       "additionalRuleLabels": {"team": "platform"}},
}


# -- PromQL: the metric names an expression selects -------------------------------------------------
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                       "unless", "offset", "atan2", "inf", "nan"})
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<expr>.+),)?\s*(?P<label>\w+)\s*\)\s*$", re.S)


def promql_metric_names(expr: str) -> set[str]:
    """The series names an expression selects (as stored: ``x_total``, ``x_bucket``, never stripped).

    Strings (which may hold ``{name}`` route templates), label matchers, ranges and grouping label lists
    go first; what remains of identifiers not followed by ``(`` (a function or aggregation) and not a
    keyword is a metric name."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def grafana_query_expr(query: str) -> str | None:
    """The PromQL inside a Grafana variable query (``label_values(expr, label)``), None if it has none."""
    match = _LABEL_VALUES.match(query)
    if match:
        return match.group("expr")
    return query


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced by values Prometheus accepts."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$__interval", "1m")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def test_promql_metric_names() -> None:
    expr = ('histogram_quantile(0.99, sum by (op, le) (rate(shardreg_shard_request_seconds_bucket'
            '{namespace=~"$namespace", route="/v2/{name}/manifests/{reference}"}[$__rate_interval])))'
            ' / on (op) group_left (job) max without (instance) (up offset 5m) > 1e3 * 24 * 3600'
            ' or vector(0) and sum(a_total) by (code) unless b:recorded:rate5m')
    assert promql_metric_names(expr) == {"shardreg_shard_request_seconds_bucket", "up", "a_total",
                                         "b:recorded:rate5m"}
    assert promql_metric_names('(count(up{job="x"} == 1) or vector(0)) < 2') == {"up"}
    assert grafana_query_expr('label_values(zot_http_requests_total{a=~"$b"}, job)') == \
        'zot_http_requests_total{a=~"$b"}'
    assert grafana_query_expr("label_values(namespace)") is None
    assert grafana_to_promql('rate(x{a=~"$a", b=~"${b}"}[$__rate_interval])') == 'rate(x{a=~".*", b=~".*"}[5m])'


# -- the dashboard ------------------------------------------------------------------------------------
def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every query of the dashboard: panel targets and variable queries."""
    out = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            expr = grafana_query_expr(query)
            if expr:
                out.append((f"variable {var['name']}", expr))
    return out


def test_dashboard_files_identical() -> None:
    assert DOCS_DASHBOARD.read_bytes() == DASHBOARD.read_bytes(), \
        f"{DOCS_DASHBOARD.relative_to(REPO)} and {DASHBOARD.relative_to(REPO)} must be the same file"


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "shardreg-overview" and len(dashboard["uid"]) <= 40
    assert dashboard["title"] == "shardreg"
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None  # importable into any Grafana
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    # up{} must never be asked for every job of a namespace: the shard job variable has no "All".
    assert variables["shard_job"]["includeAll"] is False
    ids = [p["id"] for p in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    used_vars = set()
    for panel in dashboard_panels(dashboard):
        assert panel["title"] and {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("description"), f"panel {panel['title']!r} has no description"
        assert panel["targets"], f"panel {panel['title']!r} has no queries"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"].strip()
            used_vars |= set(re.findall(r"\$\{?(\w+)", target["expr"]))
    assert used_vars - {"__rate_interval", "__range"} <= set(variables), used_vars
    # What an operator expects to find, by the series it is built from.
    exprs = " ".join(e for _, e in dashboard_exprs(dashboard))
    for needle in ("zot_http_requests_total", 'code=~"5.."', "histogram_quantile(0.99",
                   "histogram_quantile(0.5", "zot_http_method_latency_seconds_bucket",
                   "shardreg_http_received_bytes_total", "shardreg_http_sent_bytes_total",
                   "shardreg_shard_blob_bytes", "shardreg_shard_disk_free_bytes", "up{",
                   "shardreg_shard_damaged_objects", "shardreg_shard_uploads_in_progress",
                   "shardreg_http_uploads_in_progress", "shardreg_shard_request_timeouts_total"):
        assert needle in exprs, f"the dashboard has no query with {needle}"


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each dashboard query (Grafana variables filled in) is valid PromQL: promtool checks them as
    recording rules."""
    rules = [{"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
             for i, (_, expr) in enumerate(dashboard_exprs(load_dashboard()))]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = promtool("check", "rules", path)
    assert f"SUCCESS: {len(rules)} rules found" in out, out


# -- the chart ------------------------------------------------------------------------------------
def test_monitoring_objects_off_by_default(helm: Path) -> None:
    objects = helm_template(helm)
    assert by_kind(objects, "PrometheusRule") == []
    assert [o["metadata"]["name"] for o in by_kind(objects, "ConfigMap")] == ["shardreg-config"]


def test_chart_renders_dashboard_and_rules(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps(MONITORING_VALUES))
    out = run([helm, "lint", "--strict", CHART, "--values", values]).stdout
    assert "0 chart(s) failed" in out and "[WARNING]" not in out and "[ERROR]" not in out, out
    objects = helm_template(helm, MONITORING_VALUES)
    assert validate_objects(objects) == []
    check_cluster(objects, existing_secret=None)
    cm = one(objects, "ConfigMap", "shardreg-grafana-dashboard")
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Registries"}
    assert cm["data"]["shardreg.json"] == DASHBOARD.read_text().rstrip("\n")  # byte for byte, untemplated
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    # The rules select the jobs the chart's ServiceMonitors produce (job = the scraped Service's name).
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    scraped = set()
    for sm in by_kind(objects, "ServiceMonitor"):
        sel = sm["spec"]["selector"]["matchLabels"]
        scraped |= {name for name, s in services.items() if sel.items() <= s["metadata"]["labels"].items()}
    jobs = set()
    for _, _, r in rule_list(rule["spec"]):
        for op, value in re.findall(r'\bjob(=~?)"([^"]*)"', r["expr"]):
            jobs |= set(value.replace("\\", "").split("|")) if op == "=~" else {value}
        assert r["labels"]["team"] == "platform" and r["labels"]["severity"] in ("warning", "critical")
    assert jobs == scraped == {"shardreg-gateway", "shardreg-shard-headless"}
    # Another namespace for the dashboard (where the Grafana sidecar looks), other jobs for the rules.
    objects = helm_template(helm, {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
                                   "prometheusRule": {"enabled": True, "shardJob": "shards",
                                                      "gatewayJob": "gw.x"}})
    assert one(objects, "ConfigMap", "shardreg-grafana-dashboard")["metadata"]["namespace"] == "monitoring"
    text = json.dumps(one(objects, "PrometheusRule")["spec"])
    assert 'job=\\"shards\\"' in text and 'job=~\\"gw\\\\\\\\.x|shards\\"' in text


# -- the rules ------------------------------------------------------------------------------------
def rule_list(spec: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for group in spec["groups"]:
        for i, r in enumerate(group["rules"]):
            yield group["name"], i, r


def rendered_rules(helm: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chart's PrometheusRule ``spec``: a Prometheus rule file."""
    values = values or {"prometheusRule": {"enabled": True, "additionalRuleLabels": {"team": "platform"}}}
    return one(helm_template(helm, values), "PrometheusRule")["spec"]


_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def rule_file_problems(spec: dict[str, Any]) -> list[str]:
    """A schema check of a Prometheus rule file that needs no promtool."""
    problems = []
    if set(spec) != {"groups"} or not isinstance(spec["groups"], list) or not spec["groups"]:
        return ["a rule file is {groups: [...]} with at least one group"]
    names = [g.get("name") for g in spec["groups"]]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        problems.append(f"group names must be unique non-empty strings: {names}")
    for group in spec["groups"]:
        if not set(group) <= {"name", "interval", "rules", "limit"} or not group.get("rules"):
            problems.append(f"group {group.get('name')}: unknown keys or no rules")
            continue
        for r in group["rules"]:
            where = f"{group['name']}/{r.get('alert') or r.get('record')}"
            kind = "alert" if "alert" in r else "record"
            allowed = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"} if kind == "alert" \
                else {"record", "expr", "labels"}
            if set(r) - allowed or ("alert" in r) == ("record" in r):
                problems.append(f"{where}: keys {sorted(r)}")
            if not re.fullmatch(r"[A-Za-z_:][\w:]*", str(r.get(kind, ""))):
                problems.append(f"{where}: bad {kind} name")
            if not isinstance(r.get("expr"), str) or not r["expr"].strip() or r["expr"].count("(") != r["expr"].count(")"):
                problems.append(f"{where}: expr must be a balanced non-empty string")
            if "for" in r and not _DURATION.match(str(r["for"])):
                problems.append(f"{where}: for {r['for']!r} is not a duration")
            for key in ("labels", "annotations"):
                if not isinstance(r.get(key, {}), dict) or not all(
                        isinstance(k, str) and isinstance(v, str) for k, v in r.get(key, {}).items()):
                    problems.append(f"{where}: {key} must map strings to strings")
            if kind == "alert" and r.get("labels", {}).get("severity") not in ("warning", "critical"):
                problems.append(f"{where}: severity must be warning or critical")
            if kind == "alert" and not {"summary", "description"} <= set(r.get("annotations", {})):
                problems.append(f"{where}: needs summary and description annotations")
    return problems


def test_rule_file_schema(helm: Path) -> None:
    spec = rendered_rules(helm)
    assert rule_file_problems(spec) == []
    broken = copy.deepcopy(spec)
    broken["groups"][0]["rules"][0]["for"] = "soon"
    del broken["groups"][0]["rules"][1]["annotations"]
    assert len(rule_file_problems(broken)) == 2
    alerts = {r["alert"]: r["expr"] for _, _, r in rule_list(spec)}
    # What the issue asks for: a shard down, error rate, p99 latency, disk filling, scrub damage.
    assert alerts["ShardregShardDown"].startswith("up{")
    assert 'code=~"5.."' in alerts["ShardregHighErrorRate"]
    assert "histogram_quantile(0.99" in alerts["ShardregHighManifestLatency"]
    assert "predict_linear(shardreg_shard_disk_free_bytes" in alerts["ShardregDiskFillingUp"]
    assert "shardreg_shard_damaged_objects" in alerts["ShardregScrubDamage"]


def promtool(*args: str | Path) -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it)",
                    pytrace=False)
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_promtool_check_rules(helm: Path, tmp_path: Path) -> None:
    spec = rendered_rules(helm)
    path = tmp_path / "shardreg-rules.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = promtool("check", "rules", path)
    assert f"SUCCESS: {sum(1 for _ in rule_list(spec))} rules found" in out, out


GW = 'namespace="registry", job="shardreg-gateway"'
SH = 'namespace="registry", job="shardreg-shard-headless"'
GIB = 1024 ** 3


def test_promtool_rules_fire(helm: Path, tmp_path: Path) -> None:
    """The alerts fire on the situations they are for, and stay quiet otherwise (promtool test rules).
    Annotations are left out here (they are text; ``promtool check rules`` checks their templates)."""
    spec = rendered_rules(helm)
    for _, _, r in rule_list(spec):
        r.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    manifest = 'route="/v2/{name}/manifests/{reference}", method="GET"'
    series = [
        # shard-0 goes down after 2 minutes; shard-1 stays up
        (f'up{{{SH}, instance="10.0.0.1:9100"}}', "1 1 0x100"),
        (f'up{{{SH}, instance="10.0.0.2:9100"}}', "1x102"),
        # shard 0 loses 1 GiB a minute out of 100 GiB; shard 1 sits at 0.5 GiB free, not changing
        (f'shardreg_shard_disk_free_bytes{{{SH}, shard="0"}}', f"{100 * GIB}-{GIB}x100"),
        (f'shardreg_shard_disk_free_bytes{{{SH}, shard="1"}}', f"{GIB // 2}x100"),
        (f'shardreg_shard_damaged_objects{{{SH}, shard="0"}}', "0x100"),
        (f'shardreg_shard_damaged_objects{{{SH}, shard="1"}}', "0 0 0 3x100"),
        # 100 requests a minute, 10 of them 500s (9 %)
        (f'zot_http_requests_total{{{GW}, method="GET", route="/v2/", code="200"}}', "0+100x100"),
        (f'zot_http_requests_total{{{GW}, method="GET", route="/v2/", code="500"}}', "0+10x100"),
        # manifest requests all slower than 2.5 s
        (f'zot_http_method_latency_seconds_bucket{{{GW}, {manifest}, le="1.0"}}', "0x100"),
        (f'zot_http_method_latency_seconds_bucket{{{GW}, {manifest}, le="2.5"}}', "0x100"),
        (f'zot_http_method_latency_seconds_bucket{{{GW}, {manifest}, le="+Inf"}}', "0+60x100"),
        (f'shardreg_shard_request_timeouts_total{{{GW}, op="manifest.get"}}', "0+5x100"),
        (f'shardreg_shard_request_timeouts_total{{{GW}, op="tags.list"}}', "0x100"),
        # a resize: shard 0 stops moving names at 40 repositories left; shard 1 has none left
        (f'shardreg_reshard_pending_names{{{GW}, shard="0"}}', "100-10x6 40x100"),
        (f'shardreg_reshard_pending_names{{{GW}, shard="1"}}', "0x100"),
    ]
    common = {"namespace": "registry", "team": "platform"}

    def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
        return {"alertname": name, "exp_alerts": [{"exp_labels": {**common, "severity": severity, **labels}}]}

    late = [
        alert("ShardregShardDown", "critical", job="shardreg-shard-headless", instance="10.0.0.1:9100"),
        alert("ShardregShardsMissing", "critical"),  # no series labels: the rule sets namespace
        alert("ShardregScrubDamage", "critical", shard="1"),
        alert("ShardregDiskFillingUp", "warning", shard="0"),
        alert("ShardregDiskFillingUpFast", "critical", shard="0"),
        alert("ShardregDiskAlmostFull", "critical", shard="1"),
        alert("ShardregHighErrorRate", "warning"),
        alert("ShardregHighManifestLatency", "warning"),
        alert("ShardregShardRequestTimeouts", "warning", op="manifest.get"),
        alert("ShardregResizeStalled", "warning"),
    ]
    early = [{"alertname": name, "exp_alerts": []} for name in (
        "ShardregShardDown", "ShardregShardsMissing", "ShardregDiskFillingUp", "ShardregDiskAlmostFull",
        "ShardregHighErrorRate", "ShardregHighManifestLatency", "ShardregShardRequestTimeouts")]
    # moving (names left fall every minute until 6m): quiet; 10 minutes without a switch: firing
    early += [{"alertname": "ShardregResizeStalled", "eval_time": "12m", "exp_alerts": []}]
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": [{"eval_time": "3m", **t} for t in early] + [{"eval_time": "80m", **t} for t in late],
    }]}
    assert {t["alertname"] for t in late} == {r["alert"] for _, _, r in rule_list(spec)}, "every alert is tested"
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    out = promtool("test", "rules", tmp_path / "tests.yaml")
    assert "SUCCESS" in out, out


# -- every query names a series the registry exports -----------------------------------------------
def series_names(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Series names of a real cluster: the gateway's /metrics and the shard's /metrics on
    ``cluster.shardMetricsPort``. One embedded shard: embedded shards would all bind that one port.

    A push, a pull and one request that times out (the shard stopped with SIGSTOP for longer than
    ``cluster.requestTimeout``) come first, so that every labelled series exists."""
    shard_port = free_port()
    config = {"extensions": {"metrics": {"enable": True}},
              "cluster": {"shardMetricsPort": shard_port, "requestTimeout": "3s"}}
    env_multiproc = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        cluster = Cluster(tmp_path_factory.mktemp("monitoring") / "data", shards=1, workers=1, config=config)
        with cluster:
            repo = "monitoring/app"
            with httpx.Client(base_url=cluster.url, timeout=30) as client:
                push_image(client, repo, "v1", layers=1, layer_size=20_000)
                r = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 200
                pid = cluster.children()["shard-0"]
                os.kill(pid, signal.SIGSTOP)
                try:
                    assert client.get(f"/v2/{repo}/tags/list").status_code == 503
                finally:
                    os.kill(pid, signal.SIGCONT)
                time.sleep(0.5)
            gateway = httpx.get(f"{cluster.url}/metrics", timeout=10)
            shard = httpx.get(f"http://127.0.0.1:{shard_port}/metrics", timeout=10)
            assert gateway.status_code == 200 and shard.status_code == 200
            names = series_names(gateway.text) | series_names(shard.text)
    finally:
        if env_multiproc is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = env_multiproc
    # the scrape saw what it had to see: both roles, a histogram, a timeout
    assert {"zot_http_requests_total", "shardreg_shard_blob_bytes", "zot_http_method_latency_seconds_bucket",
            "shardreg_shard_request_timeouts_total"} <= names, sorted(names)
    return names


def unknown_names(exprs: Iterable[tuple[str, str]], known: set[str]) -> list[str]:
    out = []
    for where, expr in exprs:
        names = promql_metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        out += [f"{where}: {name}" for name in sorted(names - known)]
    return out


def test_dashboard_uses_exported_series(exported: set[str]) -> None:
    known = exported | PLANNED | PROMETHEUS_BUILTIN
    assert unknown_names(dashboard_exprs(load_dashboard()), known) == []


def test_rules_use_exported_series(helm: Path, exported: set[str]) -> None:
    known = exported | PLANNED | PROMETHEUS_BUILTIN
    exprs = [(f"rule {r['alert']}", r["expr"]) for _, _, r in rule_list(rendered_rules(helm))]
    assert unknown_names(exprs, known) == []
    # and the check would notice a typo
    assert unknown_names([("x", "rate(zot_http_request_total[5m])")], known) == ["x: zot_http_request_total"]
