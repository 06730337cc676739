"""Image trust on a shard: the trust material (cosign public keys, notation certificates) and
the signature verdicts built from it (see :mod:`common.imagetrust`).

The material is stored in the extensions' environment (:mod:`shard.searchstore`); verdicts
are cached per signature layer and trust-material version, so adding a key or certificate
re-verifies everything on the next read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from common import imagetrust
from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from common.recent import Recent
from shard.ops.registry import handles
from shard.searchstore import SearchStore

log = logging.getLogger("shardreg.shard.trust")

#: Reads a small blob whole (``digest``, declared size or None); None if it cannot be read.
ReadBlob = Callable[[str, "int | None"], "bytes | None"]


#: Signature verdicts kept (each costs a signature check to recompute).
VERDICTS = 10_000


class Trust:
    def __init__(self, store: SearchStore) -> None:
        self.store = store
        self.version = 0
        self.cosign_keys: list[tuple[str, Any]] = []
        self.notation_certs: list[Any] = []
        #: Verified signature layers: a cache, bounded (one entry per signature layer ever checked otherwise).
        self._verdicts: Recent[tuple[str, str, int], imagetrust.Verdict | None] = Recent(VERDICTS)
        self._load()

    def _load(self) -> None:
        keys, certs = [], []
        entries = self.store.read(self.store.trust_entries)
        for k, kind, value in entries:
            try:
                if kind == "cosign":
                    keys.append((value.decode(), imagetrust.load_public_key(value)))
                elif kind == "notation":
                    certs.extend(imagetrust.load_certificates(value))
            except ValueError:
                log.warning("ignoring unreadable trust entry %r", k[:80])
        self.cosign_keys, self.notation_certs = keys, certs
        self.version = int.from_bytes(hashlib.sha256(b"".join(k for k, _, _ in entries)).digest()[:6], "big")
        self._verdicts.clear()

    def add(self, kind: str, store_type: str, data: bytes) -> None:
        """Store a cosign public key or a notation certificate (checked first) and reload."""
        if kind == "cosign":
            imagetrust.load_public_key(data)
            self.store.write(lambda txn: self.store.put_cosign_key(txn, data))
        elif kind == "notation":
            imagetrust.load_certificates(data)
            self.store.write(lambda txn: self.store.put_notation_cert(txn, store_type, data))
        else:
            raise RegistryError(ErrorCode.BAD_REQUEST, f"unknown trust kind {kind}")
        self._load()

    @handles(m.TRUST_PUT)
    async def op_trust_put(self, args: m.TrustPutRequest, frames: Frames) -> Answer[m.TrustPutReply]:
        data = bytes(frames[0]) if frames else b""
        try:
            self.add(args["kind"], args.get("type") or "ca", data)
        except ValueError as exc:
            raise RegistryError(ErrorCode.BAD_REQUEST, str(exc)) from None
        return {"version": self.version}, []

    @handles(m.TRUST_LIST)
    async def op_trust_list(self, args: m.NoArgs, frames: Frames) -> Answer[m.TrustListReply]:
        """Every entry as ``trust.put`` takes it back: a resize copies them to new shards."""
        entries, data = [], []
        for k, kind, value in self.store.read(self.store.trust_entries):
            parts = k.split(b"\0")
            entries.append([kind, parts[1].decode() if kind == "notation" and len(parts) > 2 else ""])
            data.append(value)
        return {"entries": entries}, data

    # -- verdicts ----------------------------------------------------------------------------
    def verdicts(self, tool: str, signature_body: bytes, sig_digest: str, subject: str,
                 read_blob: ReadBlob) -> list[imagetrust.Verdict]:
        """The verdicts of the layers of one signature manifest (its stored bytes) on ``subject``."""
        try:
            layers = json.loads(signature_body).get("layers") or []
        except (ValueError, AttributeError):
            return []
        verdicts = []
        for layer in layers:
            if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
                continue
            ck = (sig_digest, layer["digest"], self.version)
            if ck not in self._verdicts:
                self._verdicts[ck] = self._verify_layer(tool, layer, subject, read_blob)
            verdict = self._verdicts[ck]
            if verdict is not None:
                verdicts.append(verdict)
        return verdicts

    def _verify_layer(self, tool: str, layer: dict[str, Any], subject: str,
                      read_blob: ReadBlob) -> imagetrust.Verdict | None:
        if tool == "cosign":
            if layer.get("mediaType") != imagetrust.COSIGN_LAYER_TYPE:
                return None
            payload = read_blob(layer["digest"], layer.get("size"))
            if payload is None:
                return imagetrust.Verdict("cosign", False)
            signature = (layer.get("annotations") or {}).get(imagetrust.COSIGN_SIGNATURE_ANNOTATION)
            return imagetrust.verify_cosign(payload, signature, subject, self.cosign_keys)
        if layer.get("mediaType") != imagetrust.NOTATION_JWS_TYPE:
            return imagetrust.Verdict("notation", False)
        envelope = read_blob(layer["digest"], layer.get("size"))
        if envelope is None:
            return imagetrust.Verdict("notation", False)
        return imagetrust.verify_notation(envelope, subject, self.notation_certs)
