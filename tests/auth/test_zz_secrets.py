"""Runs last: no password, API key, token or session cookie the suite used appears in any log."""

from __future__ import annotations

import base64

from tests.auth.conftest import SECRETS, USERS
from tests.cluster import Cluster


def test_no_secret_in_logs(basic_cluster: Cluster, token_cluster: Cluster) -> None:
    assert len(SECRETS) > len(USERS)  # the other tests registered keys, tokens and cookies
    for cluster in (basic_cluster, token_cluster):
        text = cluster.log_path.read_text(errors="replace")
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into {cluster.log_path.name}"
        for user, password in USERS.items():
            assert base64.b64encode(f"{user}:{password}".encode()).decode() not in text
