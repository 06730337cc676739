"""``shardreg user add|remove|list --htpasswd FILE``: manage the htpasswd file of ``http.auth``.

``add`` reads the password from ``--password-stdin`` (recommended: it stays out of shell
history and ``ps``), from ``--password``, or asks twice on a terminal; it writes a bcrypt entry
(``htpasswd -B`` compatible) and replaces an existing user's entry. The file is replaced
atomically with mode 0600; running gateways pick the change up at their next request.

``remove`` only edits the file: from then on every gateway worker refuses all of the user's
credentials (password, API keys, sessions, tokens issued here), and the gateways delete the
user's API keys and sessions on their shard themselves (``gateway/auth/removal.py``; the CLI has
no access to the shards).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from pathlib import Path

from gateway.auth.htpasswd import DEFAULT_COST, hash_password, read_entries, write_entries

USER_RE = re.compile(r"[A-Za-z0-9._@-]{1,128}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shardreg user", description="manage htpasswd users")
    sub = parser.add_subparsers(dest="command", required=True, help="what to do")
    add = sub.add_parser("add", help="add a user or change their password")
    add.add_argument("username", help="the user name (1-128 of A-Z a-z 0-9 . _ @ -)")
    add.add_argument("--htpasswd", required=True, type=Path, help="the htpasswd file (created if missing)")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    secret.add_argument("--password", help="the password (visible to other local users: prefer stdin)")
    add.add_argument("--cost", type=int, default=DEFAULT_COST, help="bcrypt cost (4..16)")
    remove = sub.add_parser("remove", help="remove a user")
    remove.add_argument("username", help="the user to remove")
    remove.add_argument("--htpasswd", required=True, type=Path, help="the htpasswd file")
    listing = sub.add_parser("list", help="list users")
    listing.add_argument("--htpasswd", required=True, type=Path, help="the htpasswd file")
    return parser


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password is not None:
        return args.password
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        print("shardreg user: passwords do not match", file=sys.stderr)
        return None
    return first


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    path: Path = args.htpasswd
    if args.command != "add" and not path.exists():  # only add creates the file
        print(f"shardreg user: {path} does not exist (shardreg user add creates it)", file=sys.stderr)
        return 1
    try:
        entries = read_entries(path)
    except OSError as exc:
        print(f"shardreg user: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.command == "list":
        for user, _ in entries:
            print(user)
        return 0
    if not USER_RE.fullmatch(args.username):
        print("shardreg user: a user name is 1-128 of A-Z a-z 0-9 . _ @ -", file=sys.stderr)
        return 2
    if args.command == "remove":
        kept = [(u, h) for u, h in entries if u != args.username]
        if len(kept) == len(entries):
            print(f"shardreg user: no user {args.username} in {path}", file=sys.stderr)
            return 1
        write_entries(path, kept)
        print(f"removed {args.username} (running gateways refuse their credentials and delete their API keys"
              " and sessions)")
        return 0
    if not 4 <= args.cost <= 16:
        print("shardreg user: --cost must be 4..16", file=sys.stderr)
        return 2
    password = _read_password(args)
    if not password:
        print("shardreg user: empty password", file=sys.stderr)
        return 1
    hashed = hash_password(password, args.cost)
    replaced = any(u == args.username for u, _ in entries)
    entries = [(u, hashed if u == args.username else h) for u, h in entries]
    if not replaced:
        entries.append((args.username, hashed))
    try:
        write_entries(path, entries)
    except OSError as exc:
        print(f"shardreg user: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{'updated' if replaced else 'added'} {args.username}")
    return 0
