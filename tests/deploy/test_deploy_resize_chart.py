"""The chart through a change of ``shard.count``: rendered and validated for 2→3 and 3→2 (issue 12).

``helm upgrade`` renders with ``lookup`` answering from the cluster; offline, the chart copy of
``deploy_support.chart_deployed_with`` answers with the StatefulSet's replica count instead. The hook
Job's shell command is run for real with a ``shardreg`` stand-in on PATH that records its argv and stdin,
which is how the Job hands the credential over (never on the command line).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_checks import container, selects
from deploy_support import (
    CHART,
    NAMESPACE,
    RELEASE,
    by_kind,
    chart_deployed_with,
    helm_template,
    helm_template_error,
    helm_upgrade_template,
    one,
    validate_objects,
)

GATEWAY_URL = f"http://{RELEASE}-gateway.{NAMESPACE}.svc:5000"
AUTH = {"auth": {"htpasswd": {"enabled": True, "users": "admin:$2y$04$abcdefghijklmnopqrstuu\n"}},
        "resize": {"hook": {"credentialsSecret": "registry-admin"}}}


def jobs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return by_kind(objects, "Job")


def run_job_command(job: dict[str, Any], tmp: Path, secret: dict[str, str]) -> dict[str, Any]:
    """Run the Job's container command with the Secret's files mounted under ``tmp`` and a recording
    ``shardreg`` first on PATH; returns {"argv": [...], "stdin": "..."} as the stand-in saw them."""
    mount = next((m["mountPath"] for m in container(job).get("volumeMounts", []) if m["name"] == "credentials"), None)
    secret_dir = tmp / "secret"
    secret_dir.mkdir(exist_ok=True)
    for name, value in secret.items():
        (secret_dir / name).write_text(value)
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp / "record.json"
    stub = bin_dir / "shardreg"
    stub.write_text("#!/usr/bin/env python3\nimport json, sys\n"
                    f"json.dump({{'argv': sys.argv[1:], 'stdin': sys.stdin.read()}}, open({str(record)!r}, 'w'))\n")
    stub.chmod(0o755)
    command = container(job)["command"]
    assert command[:2] == ["sh", "-c"], command
    script = command[2] if mount is None else command[2].replace(mount, str(secret_dir))
    subprocess.run(["sh", "-c", script], env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
                   stdin=subprocess.DEVNULL, check=True, timeout=30)
    return json.loads(record.read_text())


def test_shard_pod_template_is_the_same_for_every_count(helm: Path) -> None:
    """Growing must not restart existing shards: nothing of the shard pods depends on shard.count."""
    renders = {(auth, n): helm_template(helm, {**(AUTH if auth else {}), "shard": {"count": n}})
               for auth in (False, True) for n in (2, 3)}
    for auth in (False, True):
        two, three = (one(renders[auth, n], "StatefulSet")["spec"] for n in (2, 3))
        assert two["template"] == three["template"]
        assert two["volumeClaimTemplates"] == three["volumeClaimTemplates"]
        assert (two["replicas"], three["replicas"]) == (2, 3)
    # ... while another config change still rolls them, and the gateways still roll on a count change.
    checksum = "checksum/config"
    base = one(renders[False, 2], "StatefulSet")["spec"]["template"]["metadata"]["annotations"][checksum]
    debug = one(helm_template(helm, {"shard": {"count": 2}, "config": {"log": {"level": "debug"}}}),
                "StatefulSet")["spec"]["template"]["metadata"]["annotations"][checksum]
    assert base != debug
    gw = {n: one(renders[False, n], "Deployment")["spec"]["template"]["metadata"]["annotations"][checksum]
          for n in (2, 3)}
    assert gw[2] != gw[3]


def test_grow_runs_a_post_upgrade_resize_job(helm: Path, tmp_path: Path) -> None:
    objects = helm_upgrade_template(helm, 2, {"shard": {"count": 3}}, tmp_path)
    assert validate_objects(objects) == []
    (job,) = jobs(objects)
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "post-upgrade"
    assert "hook-succeeded" in ann["helm.sh/hook-delete-policy"] and "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    assert ann["shardreg.io/resize"] == "2→3"
    spec = job["spec"]
    assert spec["backoffLimit"] == 1 and spec["activeDeadlineSeconds"] > 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["spec"]["automountServiceAccountToken"] is False
    assert container(job)["securityContext"]["readOnlyRootFilesystem"] is True
    seen = run_job_command(job, tmp_path, {})
    assert seen["argv"] == ["cluster", "resize", "--shards", "3", "--url", GATEWAY_URL]
    # The gateways' Service the Job calls exists under that name and port.
    svc = one(objects, "Service", f"{RELEASE}-gateway")
    assert svc["spec"]["ports"][0]["port"] == 5000
    # The StatefulSet grows in the same release; the new pods start empty (their own PVC).
    assert one(objects, "StatefulSet")["spec"]["replicas"] == 3


def test_shrink_runs_a_pre_upgrade_resize_job_with_the_admin_credential(helm: Path, tmp_path: Path) -> None:
    values = {**AUTH, "shard": {"count": 2}, "resize": {"hook": {"credentialsSecret": "registry-admin",
                                                                 "maxMbps": 40}}}
    objects = helm_upgrade_template(helm, 3, values, tmp_path)
    assert validate_objects(objects) == []
    (job,) = jobs(objects)
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    assert job["metadata"]["annotations"]["shardreg.io/resize"] == "3→2"
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["credentials"]["secret"]["secretName"] == "registry-admin"
    assert volumes["credentials"]["secret"]["defaultMode"] == 0o440
    script = container(job)["command"][2]
    assert "s3cret-key" not in script and "registry-admin" not in script
    want = ["cluster", "resize", "--shards", "2", "--url", GATEWAY_URL, "--max-mbps", "40"]
    # An API key of the admin user in the Secret ...
    (tmp_path / "key").mkdir()
    seen = run_job_command(job, tmp_path / "key", {"username": "admin", "api-key": "zak_s3cret-key"})
    assert seen == {"argv": [*want, "--user", "admin", "--api-key-stdin"], "stdin": "zak_s3cret-key"}
    # ... or an admin's user name and password.
    (tmp_path / "pw").mkdir()
    seen = run_job_command(job, tmp_path / "pw", {"username": "admin", "password": "pa ss"})
    assert seen == {"argv": [*want, "--user", "admin", "--password-stdin"], "stdin": "pa ss"}


def test_an_unchanged_count_converges_and_needs_no_credential(helm: Path, tmp_path: Path) -> None:
    """Same count: the post-upgrade Job still runs (a no-op resize, or the end of a grow whose earlier
    upgrade failed after the StatefulSet grew); with auth on and no credential it is left out, not failed."""
    (tmp_path / "a").mkdir()
    (job,) = jobs(helm_upgrade_template(helm, 3, {"shard": {"count": 3}}, tmp_path / "a"))
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-upgrade"
    assert run_job_command(job, tmp_path / "a", {})["argv"][:4] == ["cluster", "resize", "--shards", "3"]
    (tmp_path / "b").mkdir()
    assert jobs(helm_upgrade_template(helm, 3, {"auth": AUTH["auth"], "shard": {"count": 3}}, tmp_path / "b")) == []
    (tmp_path / "c").mkdir()
    assert len(jobs(helm_upgrade_template(helm, 3, {**AUTH, "shard": {"count": 3}}, tmp_path / "c"))) == 1
    # Install, and any rendering that cannot see the cluster (helm template, client-side dry run).
    assert jobs(helm_template(helm, {"shard": {"count": 3}})) == []
    assert jobs(helm_template(helm, {"shard": {"count": 3}}, extra=["--is-upgrade"])) == []
    # The hook disabled: a grow renders no Job (run `shardreg cluster resize` yourself afterwards).
    (tmp_path / "off").mkdir()
    off = {"shard": {"count": 3}, "resize": {"hook": {"enabled": False}}}
    assert jobs(helm_upgrade_template(helm, 2, off, tmp_path / "off")) == []


@pytest.mark.parametrize(("deployed", "count", "removed"), [(3, 2, "shard 2"), (4, 2, "shards 2, 3")])
def test_shrink_without_the_hook_is_refused(helm: Path, tmp_path: Path, deployed: int, count: int,
                                            removed: str) -> None:
    chart = chart_deployed_with(deployed, tmp_path)
    values = {"shard": {"count": count}, "resize": {"hook": {"enabled": False}}}
    err = helm_template_error(helm, chart, values, "--is-upgrade")
    assert (f"shard.count {deployed}→{count} removes {removed}, which may hold data: run "
            f"`shardreg cluster resize --shards {count}` first or enable resize.hook") in err
    # Once the operator has drained the cluster with the CLI, they say so and the upgrade goes through.
    drained = {**values, "resize": {"hook": {"enabled": False}, "drainedTo": count}}
    objects = helm_template(helm, drained, chart=chart, extra=["--is-upgrade"])
    assert jobs(objects) == [] and one(objects, "StatefulSet")["spec"]["replicas"] == count
    # A stale acknowledgement (drained to another count) does not.
    stale = {**values, "resize": {"hook": {"enabled": False}, "drainedTo": count + 5}}
    assert "may hold data" in helm_template_error(helm, chart, stale, "--is-upgrade")


def test_hook_with_authentication_needs_a_credential(helm: Path, tmp_path: Path) -> None:
    values = {"auth": AUTH["auth"], "shard": {"count": 3}}
    err = helm_template_error(helm, chart_deployed_with(2, tmp_path), values, "--is-upgrade")
    assert "resize.hook.credentialsSecret" in err and "2→3" in err


def test_network_policy_lets_the_job_reach_the_gateways(helm: Path, tmp_path: Path) -> None:
    """Even with the gateways closed to everyone but an ingress controller, the Job gets through."""
    values = {"shard": {"count": 3}, "networkPolicy": {"gatewayFrom": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}}]}}
    objects = helm_upgrade_template(helm, 2, values, tmp_path)
    (job,) = jobs(objects)
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    gateway = one(objects, "Deployment")
    port = next(p for p in container(gateway)["ports"] if p["name"] == "http")
    policy = one(objects, "NetworkPolicy", f"{RELEASE}-gateway")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], gateway["spec"]["template"]["metadata"]["labels"])
    admitted = [rule for rule in policy["spec"]["ingress"]
                if any(p["port"] in ("http", port["containerPort"]) for p in rule["ports"])
                and any("podSelector" in peer and "namespaceSelector" not in peer
                        and selects(peer["podSelector"]["matchLabels"], job_labels) for peer in rule.get("from", []))]
    assert admitted, policy["spec"]["ingress"]
    # The shards still admit only the gateways: the Job never talks to them.
    shard_policy = one(objects, "NetworkPolicy", f"{RELEASE}-shard")
    zmq_rules = [r for r in shard_policy["spec"]["ingress"] if any(p["port"] == "zmq" for p in r["ports"])]
    assert zmq_rules and not any(selects(peer["podSelector"]["matchLabels"], job_labels)
                                 for r in zmq_rules for peer in r["from"])


def test_chart_source_keeps_lookup_out_of_the_resize_template() -> None:
    """Only _deployed.tpl asks the cluster, so the offline renderings above test everything else."""
    assert "lookup" not in (CHART / "templates" / "resize-hook.yaml").read_text()
    assert "lookup" in (CHART / "templates" / "_deployed.tpl").read_text()


def test_docs_describe_the_resize_procedure(helm: Path, tmp_path: Path) -> None:
    """docs/kubernetes.md quotes the chart's refusal and no longer tells users to fix the count."""
    docs = (CHART.parents[1] / "docs" / "kubernetes.md").read_text()
    assert "Choose `shard.count` now" not in docs
    for text in ("post-upgrade hook Job", "pre-upgrade hook Job", "resize.hook.credentialsSecret",
                 "kubectl -n registry delete pvc data-shardreg-shard-2", "resize.drainedTo=2"):
        assert text in docs, text
    err = helm_template_error(helm, chart_deployed_with(3, tmp_path),
                              {"shard": {"count": 2}, "resize": {"hook": {"enabled": False}}}, "--is-upgrade")
    quoted = " ".join(docs.split("shard.count 3→2 removes", 1)[1].split("```", 1)[0].split())
    assert "shard.count 3→2 removes " + quoted in " ".join(err.split())
