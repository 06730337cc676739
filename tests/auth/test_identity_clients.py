"""Real clients against one real cluster with LDAP (StartTLS, CA file) and OIDC workload identity.

skopeo and podman log in and push as an LDAP user (a real slapd); skopeo pushes with a CI job's
ID token as the password (a real oidc-provider's key), as ``docker login --password <id token>``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import remember
from tests.auth.oidc_provider import OidcProvider
from tests.auth.slapd import LDAP_USERS, SEARCHER_PW, Slapd
from tests.auth.test_ldap import ACCESS, ldap_basic, ldap_config
from tests.auth.test_skopeo import oci_layout, skopeo
from tests.auth.test_workload import ACCESS as WORKLOAD_ACCESS
from tests.auth.test_workload import CLIENT, workload_config
from tests.cluster import Cluster

PODMAN = shutil.which("podman") or "/usr/bin/podman"


def podman(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """podman as root with its own vfs storage (no daemon, nothing shared with other tests)."""
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run"),
           "REGISTRY_AUTH_FILE": str(home / "podman-auth.json")}
    (home / "run").mkdir(exist_ok=True)
    runroot = home / "runroot"
    if not runroot.exists():  # podman wants a runroot path of at most 50 characters
        runroot.symlink_to(tempfile.mkdtemp(prefix="pr-", dir="/tmp"))
    return subprocess.run([PODMAN, "--root", str(home / "storage"), "--runroot", str(runroot.resolve()),
                           "--storage-driver", "vfs", *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(tmp_path_factory.mktemp("slapd-clients")).start().load()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path_factory.mktemp("oidc-clients"), [CLIENT]) as p:
        yield p


@pytest.fixture(scope="module")
def cluster(slapd: Slapd, provider: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    d = tmp_path_factory.mktemp("identity-clients")
    config = ldap_config(slapd, d, startTLS=True, caCert=str(slapd.ca))
    config["http"]["auth"]["bearer"] = workload_config(provider, d, key=False)["http"]["auth"]["bearer"]
    config["http"]["accessControl"] = {"repositories": {**ACCESS["repositories"], **WORKLOAD_ACCESS["repositories"]},
                                       "adminPolicy": ACCESS["adminPolicy"]}
    remember(*LDAP_USERS.values(), SEARCHER_PW, CLIENT["client_secret"])
    with Cluster(d / "reg", config=config, workers=1) as c:
        yield c


def test_skopeo_and_podman_as_an_ldap_user_over_starttls(cluster: Cluster, tmp_path: Path) -> None:
    src = oci_layout(tmp_path / "src", "v1")
    creds = f"lena:{LDAP_USERS['lena']}"
    r = skopeo("login", "--tls-verify=false", "-u", "lena", "-p", LDAP_USERS["lena"],
               f"127.0.0.1:{cluster.port}", home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1",
               f"docker://127.0.0.1:{cluster.port}/dev/skopeo:v1", home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--src-tls-verify=false", "--src-creds", creds,
               f"docker://127.0.0.1:{cluster.port}/dev/skopeo:v1", f"oci:{tmp_path / 'out'}:v1", home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"nina:{LDAP_USERS['nina']}",
               f"oci:{src}:v1", f"docker://127.0.0.1:{cluster.port}/dev/skopeo:v2", home=tmp_path)
    assert r.returncode != 0   # nina is not a developer
    # podman login and push as the LDAP user (vfs storage under tmp_path; .ci/run installs podman)
    r = podman("login", "--tls-verify=false", "-u", "lena", "-p", LDAP_USERS["lena"],
               f"127.0.0.1:{cluster.port}", home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = podman("pull", f"oci:{src}:v1", home=tmp_path)
    assert r.returncode == 0, r.stderr
    image = r.stdout.strip().splitlines()[-1]
    r = podman("push", "--tls-verify=false", image, f"docker://127.0.0.1:{cluster.port}/dev/podman:v1",
               home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = podman("login", "--tls-verify=false", "-u", "lena", "-p", "wrong", f"127.0.0.1:{cluster.port}",
               home=tmp_path)
    assert r.returncode != 0
    shutil.rmtree((tmp_path / "runroot").resolve(), ignore_errors=True)
    pushed = httpx.get(f"{cluster.url}/v2/dev/podman/manifests/v1", headers=ldap_basic("lena"), timeout=30)
    assert pushed.status_code == 200
    assert SEARCHER_PW not in cluster.logs() and LDAP_USERS["lena"] not in cluster.logs()


def test_skopeo_pushes_with_an_id_token_as_password(cluster: Cluster, provider: OidcProvider, tmp_path: Path) -> None:
    """docker/podman/skopeo ``--password <id token>``: Basic auth (no token service configured)."""
    token = provider.mint()
    remember(token)
    src = oci_layout(tmp_path / "src", "v1")
    r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"ci:{token}", f"oci:{src}:v1",
               f"docker://127.0.0.1:{cluster.port}/ci/skopeo:v1", home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"ci:{provider.mint(aud='x')}",
               f"oci:{src}:v1", f"docker://127.0.0.1:{cluster.port}/ci/skopeo:v2", home=tmp_path)
    assert r.returncode != 0
    assert token not in cluster.logs()
