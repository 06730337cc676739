"""OIDC workload identity (``http.auth.bearer.oidc[]``): a CI job's ID token is its credential.

A token is taken as a workload token when its (unverified) ``iss`` is a configured issuer; it
is then verified completely: signature with the issuer's published keys (:mod:`gateway.auth.jwks`;
asymmetric algorithms only), ``iss``, ``aud`` (one of ``audiences``), ``exp`` (required) and
``nbf``/``iat``. zot's ``claimMapping`` CEL expressions (``variables``, ``validations``,
``username`` — default ``claims.iss + '/' + claims.sub`` — and ``groups``) run with cel-python;
the name and groups then go through accessControl like any user's (``via="workload"``).

Accepted as ``Authorization: Bearer <id token>`` on any route, and as the password of Basic
auth (so ``docker login --password <id token>``, skopeo and podman work, also through the
built-in ``/auth/token``, which then issues a registry token for the mapped user).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import celpy
import jwt

from common.config.identity import WorkloadIssuer, compile_cel
from common.errors import ErrorCode, RegistryError
from gateway.auth.bearer import LEEWAY, TokenError, token_error
from gateway.auth.identity import Identity
from gateway.auth.jwks import ALGORITHMS, Issuer, IssuerUnavailable

log = logging.getLogger("shardreg.auth")

MAX_TOKEN = 16 * 1024


class ClaimMapping:
    """Compiled CEL expressions of one issuer's ``claimMapping``."""

    def __init__(self, settings: WorkloadIssuer) -> None:
        def compile_expr(expr: str, key: str) -> Any:
            return compile_cel(expr, f"http.auth.bearer.oidc claimMapping.{key}")

        self.variables = [(name, compile_expr(e, "variables")) for name, e in settings.variables]
        self.validations = [(compile_expr(e, "validations"), message) for e, message in settings.validations]
        self.username = compile_expr(settings.username, "username")
        self.groups = compile_expr(settings.groups, "groups") if settings.groups else None

    def apply(self, claims: dict[str, Any]) -> tuple[str, frozenset[str]]:
        """(username, groups) for verified ``claims``; raises :class:`TokenError`."""
        activation: dict[str, Any] = {"claims": celpy.json_to_cel(claims)}
        try:
            variables = {name: program.evaluate(activation) for name, program in self.variables}
            activation["vars"] = celpy.json_to_cel({})
            if variables:
                activation["vars"] = celpy.celtypes.MapType(
                    {celpy.celtypes.StringType(k): v for k, v in variables.items()})
            for program, message in self.validations:
                result = program.evaluate(activation)
                if not isinstance(result, bool | celpy.celtypes.BoolType) or not result:
                    raise TokenError(f"claim validation failed: {message}")
            name = self.username.evaluate(activation)
            groups = self.groups.evaluate(activation) if self.groups is not None else []
        except TokenError:
            raise
        except Exception as exc:  # a claim the expression needs is missing or of another type
            raise TokenError(f"claims do not map to a user ({type(exc).__name__})") from None
        if not isinstance(name, str) or not name:
            raise TokenError("claims do not map to a user name")
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list):
            raise TokenError("groups expression must give a list of strings")
        return str(name), frozenset(str(g) for g in groups if isinstance(g, str))


class WorkloadVerifier:
    def __init__(self, issuers: tuple[WorkloadIssuer, ...], groups_of: Callable[[str], frozenset[str]]) -> None:
        self.groups_of = groups_of
        self.issuers = {i.issuer.rstrip("/"): (i, ClaimMapping(i), Issuer(
            i.issuer, ca_pem=i.certificate_authority, ca_file=i.certificate_authority_file)) for i in issuers}

    def _claimed_issuer(self, token: str) -> str | None:
        if len(token) > MAX_TOKEN:
            return None
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        iss = claims.get("iss")
        if not isinstance(iss, str):
            return None
        iss = iss.rstrip("/")
        if iss in self.issuers:
            return iss
        skipping = [k for k, (cfg, _, _) in self.issuers.items() if cfg.skip_issuer_verification]
        return skipping[0] if len(skipping) == 1 else None

    def owns(self, token: str) -> bool:
        """Is ``token`` an ID token of a configured issuer (by its unverified ``iss``)?"""
        return self._claimed_issuer(token) is not None

    async def identity(self, token: str) -> Identity:
        """The workload's identity; raises :class:`TokenError` (401), or 503 when the keys cannot be fetched."""
        iss = self._claimed_issuer(token)
        if iss is None:
            raise TokenError("token issuer not trusted")
        settings, mapping, issuer = self.issuers[iss]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise TokenError("token signature algorithm not accepted")
        try:
            key = await issuer.key(kid if isinstance(kid, str) else None)
        except IssuerUnavailable as exc:
            log.error("workload identity: cannot fetch the keys of %s: %s", iss, exc)
            raise RegistryError(ErrorCode.UNAVAILABLE, "the token issuer's keys are unavailable, retry later",
                                headers={"Retry-After": "5"}) from None
        if key is None:
            raise TokenError("token signed with an unknown key")
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=list(settings.audiences),
                                issuer=None if settings.skip_issuer_verification else settings.issuer,
                                leeway=LEEWAY, options={"require": ["exp", "aud", "iss"]})
        except jwt.PyJWTError as exc:
            raise token_error(exc) from None
        name, groups = mapping.apply(claims)
        return Identity(name=name, groups=self.groups_of(name) | groups, via="workload", origin="workload")

    async def password_identity(self, token: str) -> Identity | None:
        """For Basic auth: the identity, or None (the reason logged) so the failure is counted."""
        try:
            return await self.identity(token)
        except TokenError as exc:
            log.info("workload token refused: %s", exc)
            return None

    async def close(self) -> None:
        for _, _, issuer in self.issuers.values():
            await issuer.close()
