"""``shardreg cluster resize|status``: an HTTP client of a gateway's admin routes (issue 12).

    shardreg cluster resize --shards M [--max-mbps X] [--no-wait] [--url URL]
                            [--user U (--password-stdin | --api-key-stdin)]
    shardreg cluster status [--url URL] [--json] [--user U ...]

``resize`` asks for the new count, then (unless ``--no-wait``) polls the status every second,
printing one progress line, until the resize is done. Exit codes: 0 done (or nothing to do), 1
refused (another resize running) or failed/aborted, 2 usage or connection errors. Killing the
command does not stop the resize: it runs in the cluster (a gateway's driver).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"
API = "/v2/_shardreg/cluster"


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _request(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    url = args.url.rstrip("/") + API + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if args.credentials:
        req.add_header("Authorization", "Basic " + base64.b64encode(args.credentials.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the operator's URL
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            doc = json.loads(exc.read() or b"null")
        except ValueError:
            doc = None
        return exc.code, doc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CliError(f"cannot reach {args.url}: {getattr(exc, 'reason', exc)}", 2) from None


def _error(doc: Any) -> str:
    try:
        error = doc["errors"][0]
        return f"{error['code']}: {error['message']}"
    except (TypeError, KeyError, IndexError):
        return str(doc)


def _line(doc: dict[str, Any]) -> str:
    progress = doc.get("progress") or {}
    names, size = progress.get("names") or {}, progress.get("bytes") or {}
    resize = doc.get("resize") or {}
    done, total = names.get("done", 0), names.get("done", 0) + names.get("left", 0)
    eta = progress.get("etaSeconds")
    return (f"epoch {doc['epoch']} {doc['phase']} {doc['from']}→{doc['to']} [{resize.get('state', '-')}]: "
            f"{done}/{total} names, {size.get('done', 0) / 2**20:.1f} MiB copied, "
            f"{(progress.get('bytesPerSecond') or 0) / 1e6:.1f} MB/s, fence p99 "
            f"{1000 * (progress.get('fence') or {}).get('p99', 0):.0f} ms" + (f", ETA {eta:.0f}s" if eta else ""))


def _human(doc: dict[str, Any]) -> str:
    lines = [_line(doc)]
    if doc.get("driver"):
        lines.append(f"driver: {doc['driver']['holder']} (lease age {doc['driver']['leaseAge']:.1f}s)")
    for shard in doc.get("shardStates", []):
        lines.append(f"  shard {shard['index']}: {'up' if shard['up'] else 'DOWN'}, epoch {shard['epoch']}, "
                     f"{shard['role']}, owned {shard['owned']}, moving {shard['moving']}, switched {shard['switched']}")
    for error in doc.get("errors") or []:
        lines.append(f"  error: {error}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    status, doc = _request(args, "GET", "/status")
    if status != 200:
        raise CliError(f"status: HTTP {status}: {_error(doc)}", 1 if status in (401, 403) else 2)
    print(json.dumps(doc, indent=2) if args.json else _human(doc))
    return 0


def cmd_resize(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"shards": args.shards}
    if args.max_mbps is not None:
        body["maxMbps"] = args.max_mbps
    status, doc = _request(args, "POST", "/resize", body)
    if status == 409:
        raise CliError(_error(doc), 1)
    if status not in (200, 202):
        raise CliError(f"resize: HTTP {status}: {_error(doc)}", 2 if status == 400 else 1)
    if status == 200 and doc.get("phase") == "stable" and doc.get("shards") == args.shards:
        print(f"the cluster already has {args.shards} shards (epoch {doc['epoch']}): nothing to do")
        return 0
    resize = doc.get("resize") or {}
    print(f"resize {resize.get('id', '?')}: {doc['from']}→{args.shards} began")
    if args.no_wait:
        return 0
    while True:
        time.sleep(args.interval)
        status, doc = _request(args, "GET", "/status")
        if status != 200:
            print(f"status: HTTP {status}: {_error(doc)} (retrying)", file=sys.stderr)
            continue
        print(_line(doc), flush=True)
        state = (doc.get("resize") or {}).get("state")
        if state == "done" and doc["phase"] == "stable" and doc["shards"] == args.shards:
            print(f"done: {args.shards} shards, epoch {doc['epoch']}")
            return 0
        if state in ("failed", "aborted"):
            raise CliError(f"the resize {state}: {(doc.get('resize') or {}).get('error') or ''}", 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shardreg cluster", description="Change or inspect a running cluster.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=DEFAULT_URL, help=f"a gateway's URL (default {DEFAULT_URL})")
    common.add_argument("--user", help="an admin user (with auth on)")
    secret = common.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the user's password from stdin")
    secret.add_argument("--api-key-stdin", action="store_true", help="read an API key of the user from stdin")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    resize = sub.add_parser("resize", parents=[common], help="change the number of shards, online")
    resize.add_argument("--shards", type=int, required=True, help="the new shard count (1..256)")
    resize.add_argument("--max-mbps", type=float, help="limit the copy rate (MB/s)")
    resize.add_argument("--no-wait", action="store_true", help="return once the resize began")
    resize.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    resize.set_defaults(func=cmd_resize)
    status = sub.add_parser("status", parents=[common], help="the map, the resize in progress, each shard")
    status.add_argument("--json", action="store_true", help="print the status document as JSON")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    args.credentials = None
    if args.password_stdin or args.api_key_stdin:
        if not args.user:
            print("shardreg cluster: --user is needed with --password-stdin / --api-key-stdin", file=sys.stderr)
            return 2
        args.credentials = f"{args.user}:{sys.stdin.readline().rstrip()}"
    if args.command == "resize" and not 1 <= args.shards <= 256:
        print("shardreg cluster: --shards must be in 1..256", file=sys.stderr)
        return 2
    try:
        code: int = args.func(args)
        return code
    except CliError as exc:
        print(f"shardreg cluster: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
