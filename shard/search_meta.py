"""What the search extension needs, kept by each shard for its own repositories.

A second LMDB environment, ``<shard dir>/search``, beside the shard's main metadata
(everything here can be lost without harming an image; it is search data)::

    pushes     repo \\0 digest       -> {at, by}        first push of a manifest, and who pushed it
    tagtimes   repo \\0 tag          -> timestamp       when the tag last moved
    stats      repo \\0 digest       -> {downloads, last}
    stars      repo \\0 user         -> b"1"
    bookmarks  repo \\0 user         -> b"1"
    trust      cosign \\0 sha256(key)             -> PEM public key
               notation \\0 type \\0 sha256(cert)  -> DER certificate

Downloads are counted in memory on the pull path and written in one transaction every
:data:`FLUSH_INTERVAL` seconds (or when :data:`FLUSH_PENDING` digests are waiting): a
manifest GET never waits for an LMDB write. Readers add the pending counts, so a pull is
visible at once.

Image and repository summaries are built from the main store (manifests, tags, referrers),
the image config blob and the records above, using zot's GraphQL field names, so the gateway
only filters (access control), merges, sorts and paginates. Signature verdicts (cosign,
notation; see :mod:`common.imagetrust`) are cached per signature manifest and trust-store
version.

The shard ops are registered through :func:`handlers`; :mod:`shard.service` calls
:func:`record_push`, :func:`record_pull` and :func:`close`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lmdb

from common import imagetrust
from common.errors import ErrorCode, RegistryError
from common.profiling import run_profile
from common.protocol import Op
from common.rules import INDEX_MEDIA_TYPES
from shard.metastore import MetaStore, key, unpack

if TYPE_CHECKING:
    from shard.service import ShardService

log = logging.getLogger("shardreg.shard.search")

FLUSH_INTERVAL = 2.0
FLUSH_PENDING = 5000
_DBS = ("pushes", "tagtimes", "stats", "stars", "bookmarks", "trust")
#: Config blobs and signature payloads larger than this are not read for search.
MAX_SMALL_BLOB = 4 * 1024 * 1024
_SIG_TAG_RE = re.compile(r"^(sha256|sha512)-([a-f0-9]+)\.(sig|att|sbom)$")
IMAGE_CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}

ANNOTATIONS = {
    "Title": ("org.opencontainers.image.title",),
    "Description": ("org.opencontainers.image.description",),
    "Vendor": ("org.opencontainers.image.vendor",),
    "Licenses": ("org.opencontainers.image.licenses",),
    "Source": ("org.opencontainers.image.source",),
    "Documentation": ("org.opencontainers.image.documentation",),
    "Authors": ("org.opencontainers.image.authors",),
    "Labels": ("org.label-schema.labels",),
}
_CREATED_KEYS = ("org.opencontainers.image.created", "org.label-schema.build-date")


# -- time --------------------------------------------------------------------------------------
def fmt_time(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> float | None:
    """An RFC 3339 timestamp (nanoseconds allowed) → epoch seconds; None if unparsable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("z", "Z")
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not match:
        return None
    base, frac, zone = match.groups()
    frac = (frac or ".0")[:7]
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        return datetime.fromisoformat(f"{base}{frac}{zone}").timestamp()
    except ValueError:
        return None


class SearchStore(MetaStore):
    """The search LMDB environment (same transaction helpers as the main store)."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        super().__init__(path, sync=sync, dbs=_DBS, map_size=64 << 20)


class SearchMeta:
    def __init__(self, service: ShardService) -> None:
        self.service = service
        self.store = SearchStore(service.root / "search")
        self.pending: dict[tuple[str, str], list[float]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._static: dict[tuple[str, str], dict | None] = {}
        self._verdicts: dict[tuple[str, str, int], imagetrust.Verdict | None] = {}
        self.trust_version = 0
        self.cosign_keys: list[tuple[str, Any]] = []
        self.notation_certs: list[Any] = []
        self._load_trust()

    # -- recording -----------------------------------------------------------------------------
    async def record_push(self, args: dict) -> None:
        repo, digest, now = args["repo"], args["digest"], time.time()
        by = args.get("pushed_by") or ""

        def run(txn: Any) -> None:
            pkey = key(repo, digest)
            if txn.get(pkey, db=self.store.db["pushes"]) is None:
                self.store.put(txn, "pushes", pkey, {"at": now, "by": by})
            for tag in args.get("tags") or []:
                self.store.put(txn, "tagtimes", key(repo, tag), now)

        await self.store.write_async(run)

    def record_pull(self, repo: str, digest: str) -> None:
        entry = self.pending.get((repo, digest))
        if entry is None:
            self.pending[(repo, digest)] = [1, time.time()]
        else:
            entry[0] += 1
            entry[1] = time.time()
        if len(self.pending) >= FLUSH_PENDING:
            self.flush()
        elif self._flush_handle is None:
            try:
                self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
            except RuntimeError:  # no loop (tests calling directly): write now
                self.flush()

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self.pending:
            return
        pending, self.pending = self.pending, {}

        def run(txn: Any) -> None:
            for (repo, digest), (count, last) in pending.items():
                skey = key(repo, digest)
                stats = self.store.get(txn, "stats", skey) or {"downloads": 0, "last": 0.0}
                stats["downloads"] += int(count)
                stats["last"] = max(stats["last"], last)
                self.store.put(txn, "stats", skey, stats)

        try:
            self.store.write(run)
        except lmdb.Error:
            log.exception("flushing download counts failed")

    def close(self) -> None:
        self.flush()
        self.store.close()

    # -- trust material --------------------------------------------------------------------------
    def _load_trust(self) -> None:
        keys, certs = [], []
        entries = self.store.read(lambda txn: [(k, bytes(v)) for k, v in self.store.scan(txn, "trust", b"")])
        for k, value in entries:
            kind = k.split(b"\0", 1)[0]
            try:
                if kind == b"cosign":
                    keys.append((value.decode(), imagetrust.load_public_key(value)))
                elif kind == b"notation":
                    certs.extend(imagetrust.load_certificates(value))
            except ValueError:
                log.warning("ignoring unreadable trust entry %r", k[:80])
        self.cosign_keys, self.notation_certs = keys, certs
        self.trust_version = int.from_bytes(hashlib.sha256(b"".join(k for k, _ in entries)).digest()[:6], "big")
        self._verdicts.clear()

    def add_trust(self, kind: str, store_type: str, data: bytes) -> None:
        if kind == "cosign":
            imagetrust.load_public_key(data)
            tkey = key("cosign", hashlib.sha256(data.strip()).hexdigest())
        elif kind == "notation":
            imagetrust.load_certificates(data)
            tkey = key("notation", store_type, hashlib.sha256(data).hexdigest())
        else:
            raise RegistryError(ErrorCode.BAD_REQUEST, f"unknown trust kind {kind}")
        self.store.write(lambda txn: txn.put(tkey, data, db=self.store.db["trust"]))
        self._load_trust()

    # -- reading helpers ---------------------------------------------------------------------------
    def _read_blob(self, digest: str, size: int | None = None) -> bytes | None:
        if size is not None and size > MAX_SMALL_BLOB:
            return None
        try:
            return self.service.blobs.read(digest, 0, size if size is not None else MAX_SMALL_BLOB)
        except (OSError, ValueError):
            return None

    def _stats(self, stxn: Any, repo: str, digest: str) -> tuple[int, float]:
        stored = self.store.get(stxn, "stats", key(repo, digest)) or {"downloads": 0, "last": 0.0}
        count, last = stored["downloads"], stored["last"]
        pending = self.pending.get((repo, digest))
        if pending:
            count += int(pending[0])
            last = max(last, pending[1])
        return count, last

    def read_stats(self, repo: str, digest: str) -> tuple[int, float]:
        """(downloads, last pull) including the counts not yet flushed."""
        with self.store.env.begin() as stxn:
            return self._stats(stxn, repo, digest)

    def _manifest_static(self, txn: Any, repo: str, digest: str) -> dict | None:
        """What never changes about a stored manifest (cached): sizes, layers, config facts."""
        ck = (repo, digest)
        if ck in self._static:
            return self._static[ck]
        meta = self.service.meta
        record = meta.get(txn, "manifests", key(repo, digest))
        body = txn.get(key(repo, digest), db=meta.db["manifest_bytes"])
        if record is None or body is None:
            return None
        try:
            doc = json.loads(bytes(body))
        except ValueError:
            doc = {}
        info: dict[str, Any] = {"digest": digest, "mediaType": record["mediaType"], "size": record["size"],
                                "annotations": dict(doc.get("annotations") or {}), "created": record.get("created")}
        if record["mediaType"] in INDEX_MEDIA_TYPES:
            info["kind"] = "index"
            info["children"] = [m for m in doc.get("manifests", []) if isinstance(m, dict)]
            info["artifactType"] = doc.get("artifactType") or ""
        else:
            info["kind"] = "image"
            config = doc.get("config") or {}
            layers = [layer for layer in doc.get("layers", []) if isinstance(layer, dict)]
            info["configDigest"] = config.get("digest", "")
            config_type = config.get("mediaType", "")
            info["artifactType"] = doc.get("artifactType") or (
                config_type if config_type not in IMAGE_CONFIG_TYPES else "")
            info["layers"] = [{"Digest": layer.get("digest"), "Size": str(layer.get("size", 0))} for layer in layers]
            info["size"] = record["size"] + int(config.get("size") or 0) + sum(int(layer.get("size") or 0)
                                                                                for layer in layers)
            cfg: dict[str, Any] = {}
            if config_type in IMAGE_CONFIG_TYPES and info["configDigest"]:
                raw = self._read_blob(info["configDigest"], config.get("size"))
                try:
                    cfg = json.loads(raw) if raw else {}
                except ValueError:
                    cfg = {}
                if not isinstance(cfg, dict):
                    cfg = {}
            arch = cfg.get("architecture") or ""
            if cfg.get("variant"):
                arch = f"{arch}/{cfg['variant']}"
            info["platform"] = {"Os": cfg.get("os") or "", "Arch": arch}
            labels = (cfg.get("config") or {}).get("Labels") or {}
            info["labels"] = {k: v for k, v in labels.items() if isinstance(v, str)} if isinstance(labels, dict) else {}
            info["configCreated"] = cfg.get("created") if isinstance(cfg.get("created"), str) else None
            info["history"] = _history(cfg.get("history"), info["layers"])
        self._static[ck] = info
        if len(self._static) > 50_000:
            self._static.pop(next(iter(self._static)))
        return info

    # -- signatures ----------------------------------------------------------------------------------
    def _signature_manifests(self, txn: Any, repo: str, digest: str, tags: dict[str, str]) -> list[tuple[str, str]]:
        """(tool, signature manifest digest) pairs that sign ``digest``."""
        found: list[tuple[str, str]] = []
        alg, _, hexpart = digest.partition(":")
        sig = tags.get(f"{alg}-{hexpart}.sig")
        if sig:
            found.append(("cosign", sig))
        for _, value in self.service.meta.scan(txn, "referrers", key(repo, digest, "")):
            descriptor = unpack(value)
            artifact = descriptor.get("artifactType")
            if artifact == imagetrust.COSIGN_ARTIFACT_TYPE:
                found.append(("cosign", descriptor["digest"]))
            elif artifact == imagetrust.NOTATION_ARTIFACT_TYPE:
                found.append(("notation", descriptor["digest"]))
        return found

    def _verdict(self, txn: Any, repo: str, tool: str, sig_digest: str, subject: str) -> list[imagetrust.Verdict]:
        body = txn.get(key(repo, sig_digest), db=self.service.meta.db["manifest_bytes"])
        if body is None:
            return []
        try:
            layers = json.loads(bytes(body)).get("layers") or []
        except (ValueError, AttributeError):
            return []
        verdicts = []
        for layer in layers:
            if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
                continue
            ck = (sig_digest, layer["digest"], self.trust_version)
            if ck not in self._verdicts:
                self._verdicts[ck] = self._verify_layer(tool, layer, subject)
            if self._verdicts[ck] is not None:
                verdicts.append(self._verdicts[ck])
        return verdicts

    def _verify_layer(self, tool: str, layer: dict, subject: str) -> imagetrust.Verdict | None:
        if tool == "cosign":
            if layer.get("mediaType") != imagetrust.COSIGN_LAYER_TYPE:
                return None
            payload = self._read_blob(layer["digest"], layer.get("size"))
            if payload is None:
                return imagetrust.Verdict("cosign", False)
            signature = (layer.get("annotations") or {}).get(imagetrust.COSIGN_SIGNATURE_ANNOTATION)
            return imagetrust.verify_cosign(payload, signature, subject, self.cosign_keys)
        if layer.get("mediaType") != imagetrust.NOTATION_JWS_TYPE:
            return imagetrust.Verdict("notation", False)
        envelope = self._read_blob(layer["digest"], layer.get("size"))
        if envelope is None:
            return imagetrust.Verdict("notation", False)
        return imagetrust.verify_notation(envelope, subject, self.notation_certs)

    def _signatures(self, txn: Any, repo: str, digest: str, tags: dict[str, str]) -> list[dict]:
        out: list[dict] = []
        for tool, sig in self._signature_manifests(txn, repo, digest, tags):
            verdicts = self._verdict(txn, repo, tool, sig, digest)
            out.extend(v.summary() for v in verdicts)
            if not verdicts:
                out.append(imagetrust.Verdict(tool, False).summary())
        return out

    def _referrers(self, txn: Any, repo: str, digest: str) -> list[dict]:
        out = []
        for _, value in self.service.meta.scan(txn, "referrers", key(repo, digest, "")):
            d = unpack(value)
            out.append({"MediaType": d.get("mediaType"), "ArtifactType": d.get("artifactType") or "",
                        "Size": d.get("size"), "Digest": d.get("digest"),
                        "Annotations": [{"Key": k, "Value": v} for k, v in (d.get("annotations") or {}).items()]})
        return out

    # -- summaries -------------------------------------------------------------------------------------
    def _manifest_summary(self, txn: Any, stxn: Any, repo: str, info: dict, tags: dict[str, str],
                          platform: dict | None = None) -> dict:
        digest = info["digest"]
        downloads, _last = self._stats(stxn, repo, digest)
        push = self.store.get(stxn, "pushes", key(repo, digest)) or {}
        updated = parse_time(info.get("configCreated")) or push.get("at") or info.get("created")
        signatures = self._signatures(txn, repo, digest, tags)
        plat = info.get("platform") or {"Os": "", "Arch": ""}
        if platform and not plat.get("Os"):
            arch = platform.get("architecture") or ""
            if platform.get("variant"):
                arch = f"{arch}/{platform['variant']}"
            plat = {"Os": platform.get("os") or "", "Arch": arch}
        return {
            "Digest": digest, "ConfigDigest": info.get("configDigest", ""),
            "LastUpdated": info.get("configCreated") or fmt_time(updated), "_updated": updated or 0.0,
            "Size": str(info["size"]), "IsSigned": bool(signatures), "SignatureInfo": signatures,
            "Platform": plat, "DownloadCount": downloads,
            "Layers": info.get("layers", []), "History": info.get("history", []),
            "Vulnerabilities": None, "Referrers": self._referrers(txn, repo, digest),
            "ArtifactType": info.get("artifactType", ""),
        }

    def image_summary(self, txn: Any, stxn: Any, repo: str, tag: str, digest: str, tags: dict[str, str]) -> dict | None:
        info = self._manifest_static(txn, repo, digest)
        if info is None:
            return None
        downloads, last = self._stats(stxn, repo, digest)
        push = self.store.get(stxn, "pushes", key(repo, digest)) or {}
        tagged = self.store.get(stxn, "tagtimes", key(repo, tag))
        signatures = self._signatures(txn, repo, digest, tags)
        annotations = dict(info["annotations"])
        if info["kind"] == "index":
            manifests = []
            size = info["size"]
            for child in info["children"]:
                child_info = self._manifest_static(txn, repo, child.get("digest", ""))
                if child_info is None:
                    continue
                manifests.append(self._manifest_summary(txn, stxn, repo, child_info, tags, child.get("platform")))
                size += child_info["size"]
                if not annotations:
                    annotations = dict(child_info["annotations"]) or dict(child_info.get("labels") or {})
            updated = max([m["_updated"] for m in manifests] or [push.get("at") or info["created"] or 0.0])
            last_updated = fmt_time(updated)
            for m in manifests:
                if m["_updated"] == updated:
                    last_updated = m["LastUpdated"]
        else:
            manifest = self._manifest_summary(txn, stxn, repo, info, tags)
            manifests = [manifest]
            size = info["size"]
            merged = dict(info.get("labels") or {})
            merged.update(annotations)
            annotations = merged
            updated, last_updated = manifest["_updated"], manifest["LastUpdated"]
        summary: dict[str, Any] = {
            "RepoName": repo, "Tag": tag, "Digest": digest, "MediaType": info["mediaType"],
            "Manifests": manifests, "Size": str(size), "DownloadCount": downloads,
            "LastPullTimestamp": fmt_time(last), "PushTimestamp": fmt_time(push.get("at") or info["created"]),
            "PushedBy": push.get("by", ""), "TaggedTimestamp": fmt_time(tagged or push.get("at")),
            "LastUpdated": last_updated, "_updated": updated or 0.0,
            "IsSigned": bool(signatures), "SignatureInfo": signatures, "Vulnerabilities": None,
            "Referrers": self._referrers(txn, repo, digest), "IsDeletable": True,
            "ArtifactType": info.get("artifactType", ""),
        }
        for field, names in ANNOTATIONS.items():
            summary[field] = next((annotations[n] for n in names if annotations.get(n)), "")
        if not summary["Description"]:
            summary["Description"] = ""
        return summary

    def _repo_tags(self, txn: Any, repo: str) -> dict[str, str]:
        prefix = key(repo, "")
        return {k[len(prefix):].decode(): bytes(v).decode()
                for k, v in self.service.meta.scan(txn, "tags", prefix)}

    def repo_images(self, txn: Any, stxn: Any, repo: str) -> list[dict]:
        """Summaries of the repository's tagged images (signature tags are not images)."""
        tags = self._repo_tags(txn, repo)
        images = []
        for tag, digest in tags.items():
            if _SIG_TAG_RE.match(tag):
                continue
            summary = self.image_summary(txn, stxn, repo, tag, digest, tags)
            if summary is not None:
                images.append(summary)
        return images

    def repo_summary(self, txn: Any, stxn: Any, repo: str, user: str | None, images: list[dict]) -> dict:
        platforms: list[dict] = []
        vendors: list[str] = []
        for image in images:
            for m in image["Manifests"]:
                if m["Platform"].get("Os") and m["Platform"] not in platforms:
                    platforms.append(m["Platform"])
            if image["Vendor"] and image["Vendor"] not in vendors:
                vendors.append(image["Vendor"])
        newest = max(images, key=lambda i: i["_updated"], default=None)
        size = sum(unpack(v)["size"] for _, v in self.service.meta.scan(txn, "links", key(repo, "")))
        size += sum(unpack(v)["size"] for _, v in self.service.meta.scan(txn, "manifests", key(repo, "")))
        star_prefix = key(repo, "")
        stars = sum(1 for _ in self.store.scan(stxn, "stars", star_prefix))
        starred = bookmarked = False
        if user:
            starred = stxn.get(key(repo, user), db=self.store.db["stars"]) is not None
            bookmarked = stxn.get(key(repo, user), db=self.store.db["bookmarks"]) is not None
        return {
            "Name": repo, "LastUpdated": newest["LastUpdated"] if newest else None,
            "_updated": newest["_updated"] if newest else 0.0,
            "Size": str(size), "Platforms": platforms, "Vendors": vendors, "NewestImage": newest,
            "DownloadCount": sum(i["DownloadCount"] for i in images), "StarCount": stars,
            "IsBookmarked": bookmarked, "IsStarred": starred, "Rank": 0,
        }

    def _repos(self, txn: Any, names: list[str] | None) -> list[str]:
        if names is not None:
            db = self.service.meta.db["repos"]
            return [n for n in names if txn.get(n.encode(), db=db) is not None]
        return [k.decode() for k, _ in self.service.meta.scan(txn, "repos", b"")]

    # -- ops -------------------------------------------------------------------------------------------
    async def op_images(self, args: dict, frames: list) -> tuple[Any, list]:
        """Image summaries of some (``repos``) or all repositories; ``digest`` keeps only the images
        whose manifest, config or a layer has that digest (or digest prefix)."""
        wanted = args.get("digest")

        def run(txn: Any) -> list[dict]:
            with self.store.env.begin() as stxn:
                out = []
                for repo in self._repos(txn, args.get("repos")):
                    for image in self.repo_images(txn, stxn, repo):
                        if wanted and not _has_digest(image, wanted):
                            continue
                        out.append(image)
                return out

        return {"images": self.service.meta.read(run)}, []

    async def op_repos(self, args: dict, frames: list) -> tuple[Any, list]:
        """Repository summaries; ``query`` keeps names containing it, ``only`` = starred|bookmarked."""
        user, query, only = args.get("user"), (args.get("query") or "").lower(), args.get("only")
        with_images = bool(args.get("images"))

        def run(txn: Any) -> list[dict]:
            with self.store.env.begin() as stxn:
                out = []
                for repo in self._repos(txn, args.get("repos")):
                    if query and query not in repo.lower():
                        continue
                    if only:
                        if not user:
                            continue
                        db = self.store.db["stars" if only == "starred" else "bookmarks"]
                        if stxn.get(key(repo, user), db=db) is None:
                            continue
                    images = self.repo_images(txn, stxn, repo)
                    summary = self.repo_summary(txn, stxn, repo, user, images)
                    if with_images:
                        summary["_images"] = images
                    out.append(summary)
                return out

        return {"repos": self.service.meta.read(run)}, []

    async def op_expand(self, args: dict, frames: list) -> tuple[Any, list]:
        repo, user = args["repo"], args.get("user")

        def run(txn: Any) -> dict:
            if txn.get(repo.encode(), db=self.service.meta.db["repos"]) is None:
                raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repo})
            with self.store.env.begin() as stxn:
                images = self.repo_images(txn, stxn, repo)
                return {"images": images, "summary": self.repo_summary(txn, stxn, repo, user, images)}

        return self.service.meta.read(run), []

    async def op_toggle(self, args: dict, frames: list) -> tuple[Any, list]:
        repo, user, action = args["repo"], args["user"], args["action"]
        if not user:
            raise RegistryError(ErrorCode.DENIED, "user preferences need an authenticated user")
        db = {"toggleStar": "stars", "toggleBookmark": "bookmarks"}.get(action)
        if db is None:
            raise RegistryError(ErrorCode.BAD_REQUEST, f"unknown action {action}")
        if self.service.meta.read(lambda txn: txn.get(repo.encode(), db=self.service.meta.db["repos"])) is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repo})

        def run(txn: Any) -> bool:
            k = key(repo, user)
            if txn.get(k, db=self.store.db[db]) is not None:
                txn.delete(k, db=self.store.db[db])
                return False
            txn.put(k, b"1", db=self.store.db[db])
            return True

        return {"value": self.store.write(run)}, []

    async def op_trust_put(self, args: dict, frames: list) -> tuple[Any, list]:
        data = bytes(frames[0]) if frames else base64.b64decode(args.get("data", ""))
        try:
            self.add_trust(args["kind"], args.get("type") or "ca", data)
        except ValueError as exc:
            raise RegistryError(ErrorCode.BAD_REQUEST, str(exc)) from None
        return {"version": self.trust_version}, []

    async def op_profile(self, args: dict, frames: list) -> tuple[Any, list]:
        try:
            text = await run_profile(args.get("kind", ""), float(args.get("seconds") or 5),
                                     int(args.get("top") or 25))
        except KeyError:
            raise RegistryError(ErrorCode.NOT_FOUND, "unknown profile") from None
        return {"text": text}, []


def _history(history: Any, layers: list[dict]) -> list[dict]:
    """Pair config history entries with layers, as zot's LayerHistory does."""
    if not isinstance(history, list) or not history:
        return [{"Layer": layer, "HistoryDescription": None} for layer in layers]
    out, index = [], 0
    for entry in history:
        if not isinstance(entry, dict):
            continue
        empty = bool(entry.get("empty_layer"))
        layer = None
        if not empty and index < len(layers):
            layer = layers[index]
            index += 1
        out.append({"Layer": layer, "HistoryDescription": {
            "Created": entry.get("created") if isinstance(entry.get("created"), str) else None,
            "CreatedBy": entry.get("created_by") or "", "Author": entry.get("author") or "",
            "Comment": entry.get("comment") or "", "EmptyLayer": empty}})
    return out


def _has_digest(image: dict, wanted: str) -> bool:
    def hit(d: str | None) -> bool:
        return bool(d) and (d == wanted or d.startswith(wanted) or d.split(":", 1)[-1].startswith(wanted))

    if hit(image["Digest"]):
        return True
    for m in image["Manifests"]:
        if hit(m["Digest"]) or hit(m["ConfigDigest"]) or any(hit(layer["Digest"]) for layer in m["Layers"]):
            return True
    return False


# -- the hooks shard.service calls ------------------------------------------------------------------------
def of(service: ShardService) -> SearchMeta:
    meta = getattr(service, "_search_meta", None)
    if meta is None:
        meta = SearchMeta(service)
        service._search_meta = meta  # type: ignore[attr-defined]
    return meta


async def record_push(service: ShardService, args: dict) -> None:
    """After ``manifest.put`` stored a manifest: push time, pusher, tag times."""
    try:
        await of(service).record_push(args)
    except Exception:  # search data must never fail a push
        log.exception("recording push metadata failed")


def record_pull(service: ShardService, repo: str, digest: str) -> None:
    """After ``manifest.get`` served a manifest: count it (in memory; flushed in batches)."""
    of(service).record_pull(repo, digest)


def close(service: ShardService) -> None:
    meta = getattr(service, "_search_meta", None)
    if meta is not None:
        meta.close()


def handlers(service: ShardService) -> dict[Op, Any]:
    """The extension ops, for ``ShardServer.handlers``."""
    meta = of(service)
    return {
        Op.SEARCH_IMAGES: meta.op_images,
        Op.SEARCH_REPOS: meta.op_repos,
        Op.SEARCH_EXPAND: meta.op_expand,
        Op.USERPREFS_TOGGLE: meta.op_toggle,
        Op.TRUST_PUT: meta.op_trust_put,
        Op.DEBUG_PROFILE: meta.op_profile,
    }
