"""Failures of the external identity services, importable without their client libraries.

``ldap3``, ``httpx`` and ``cel-python`` are imported only by a gateway whose config uses LDAP,
OpenID or workload identity (they add to every worker's start otherwise).
"""

from __future__ import annotations


class LdapUnavailable(Exception):
    """The directory cannot answer now (down, slow, refused the service bind); message is safe."""


class IssuerUnavailable(Exception):
    """An OpenID issuer's discovery document or keys cannot be fetched now; message is safe."""
