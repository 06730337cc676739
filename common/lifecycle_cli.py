"""``shardreg retention [--dry-run]`` and ``shardreg gc --dry-run``: ask a running cluster for a
retention pass (``POST /v2/_shardreg/retention``, admin-only) and print the plan per repository.

Credentials: ``--user NAME`` with the password in ``$SHARDREG_PASSWORD`` (never on the command
line, where other users could read it in the process list)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any


def add_parsers(sub: Any) -> None:
    for name, summary in (("retention", "run a retention pass on a running cluster, or print its plan"),
                          ("gc", "print what retention and the next gc would delete (--dry-run)")):
        p = sub.add_parser(name, help=summary, description=summary + " (storage.retention; docs/lifecycle.md).")
        p.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
        p.add_argument("--url", default="http://127.0.0.1:8080", help="the registry (default http://127.0.0.1:8080)")
        p.add_argument("--user", help="an admin user; the password is read from $SHARDREG_PASSWORD")
        p.add_argument("--json", action="store_true", help="print the JSON answer")
        p.set_defaults(func=cmd_retention, gc=name == "gc")


def _request(args: argparse.Namespace) -> dict[str, Any]:
    query = f"dryRun={'true' if args.dry_run else 'false'}&gc={'true' if args.gc else 'false'}"
    request = urllib.request.Request(f"{args.url.rstrip('/')}/v2/_shardreg/retention?{query}", method="POST",
                                     data=b"")
    if args.user:
        secret = base64.b64encode(f"{args.user}:{os.environ.get('SHARDREG_PASSWORD', '')}".encode()).decode()
        request.add_header("Authorization", f"Basic {secret}")
    with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 - the operator's URL
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def render(answer: dict[str, Any], gc: bool) -> str:
    verb = "would delete" if answer.get("dryRun") else "deleted"
    lines = [f"retention ({'dry run' if answer.get('dryRun') else 'applied'}), "
             f"{len(answer.get('shards') or [])} shards"]
    total = 0
    for repo, actions in (answer.get("repositories") or {}).items():
        lines.append(repo)
        for a in actions:
            what = "tag" if a["action"] == "deleteTag" else "manifest"
            ref = a["reference"] if what == "tag" else a["digest"]
            lines.append(f"  {verb} {what:<8} {ref}  ({a['reason']})")
            total += 1
    if total == 0:
        lines.append("  nothing to delete")
    if any(s.get("incomplete") for s in answer.get("shards") or []):
        lines.append("  (the pass reached its bound; the next pass goes on)")
    if gc:
        blobs = answer.get("blobs") or {}
        lines.append(f"gc: {sum(len(v) for v in blobs.values())} unreferenced blobs older than gcDelay "
                     "would be unlinked now (more once the manifests above are gone)")
        for repo, digests in blobs.items():
            lines += [f"  {repo} {d}" for d in digests]
    lines.append(f"total: {total} deletions in {len(answer.get('repositories') or {})} repositories")
    return "\n".join(lines)


def cmd_retention(args: argparse.Namespace) -> int:
    if args.gc and not args.dry_run:
        print("shardreg gc: gc runs on each shard every storage.gcInterval; only --dry-run is available",
              file=sys.stderr)
        return 2
    try:
        answer = _request(args)
    except urllib.error.HTTPError as exc:
        print(f"shardreg {'gc' if args.gc else 'retention'}: {exc.code} {exc.read().decode(errors='replace')[:500]}",
              file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"shardreg: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if args.json else render(answer, args.gc))
    return 0
