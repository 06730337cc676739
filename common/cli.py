"""The ``shardreg`` command.

    shardreg serve [--config F] [--host H] [--port P] [--data DIR] [--shards N] [--workers W]
    shardreg gateway --config F         one gateway (Hypercorn, W workers), as a Kubernetes pod runs it
    shardreg shard --config F --index I one shard, as a StatefulSet pod runs it
    shardreg keys generate --dir D [--shards N]   CURVE key files for the internal wire
    shardreg user add|remove|list ...   manage the htpasswd file (see gateway/auth/users.py)
    shardreg bench ...                  the load benchmark (see bench/; needs the ``bench`` extras)
    shardreg retention|gc --dry-run [--url U] [--user A]   the retention plan of a running cluster
    shardreg cluster resize|status ...  change the shard count of a running cluster (common/cluster_cli.py)

A configuration or start-up problem (a bad value, a missing file, a port in use, a data
directory another process owns) is printed once, naming the key or flag, with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from importlib.metadata import PackageNotFoundError, version

from common.config import Config, ConfigError, load_config, with_overrides
from common.datalock import DataDirBusy
from common.lifecycle_cli import add_parsers as add_lifecycle_parsers
from common.listen import ListenError
from common.logs import report_warnings, setup_logging
from common.privatefs import set_umask
from common.startup import StartupError, check_files, check_shard_ports

#: Commands with their own argument parser: ``shardreg <name> ...`` is handed to it whole.
DELEGATED = {"user": "manage the users of an htpasswd file (add, remove, list)",
             "bench": "run the load benchmark (needs: pip install 'shardreg[bench]')",
             "cluster": "resize a running cluster online, or show its map and the resize in progress"}
#: Packages of the ``bench`` extras (pyproject.toml), named when one is missing.
BENCH_EXTRAS = {"rich", "matplotlib", "httpx", "aiohttp"}
#: Errors found before anything starts: printed once, exit code 2.
STARTUP_ERRORS = (ConfigError, StartupError, ListenError, DataDirBusy)


def package_version() -> str:
    try:
        return version("shardreg")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    config = with_overrides(config, host=getattr(args, "host", None), port=getattr(args, "port", None),
                            data=getattr(args, "data", None), shards=getattr(args, "shards", None),
                            workers=getattr(args, "workers", None))
    return config


def _shard_index(args: argparse.Namespace) -> int:
    """``--index``, else ``$SHARD_INDEX``, else the ordinal at the end of the host name (StatefulSet)."""
    if args.index is not None:
        return int(args.index)
    if os.environ.get("SHARD_INDEX", "").isdigit():
        return int(os.environ["SHARD_INDEX"])
    match = re.search(r"-(\d+)$", socket.gethostname())
    if match:
        return int(match.group(1))
    raise ConfigError("shard index unknown: pass --index, set SHARD_INDEX, or run as a StatefulSet pod")


def cmd_serve(args: argparse.Namespace) -> int:
    from common.supervisor import serve

    config = _load(args)
    setup_logging(config, "supervisor")
    report_warnings(config, "supervisor")
    return serve(config)


def cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.server import run_gateway

    config = _load(args)
    check_files(config)
    setup_logging(config, "gateway")
    report_warnings(config, "gateway")
    return run_gateway(config) or 0


def cmd_shard(args: argparse.Namespace) -> int:
    from shard.metastore import ClusterSizeMismatch
    from shard.server import run_shard

    config = _load(args)
    index = _shard_index(args)
    if config.cluster.endpoints and not 0 <= index < len(config.cluster.endpoints):
        raise ConfigError(f"shard index {index} is outside 0..{len(config.cluster.endpoints) - 1} (cluster.endpoints)")
    if index >= config.cluster.shards:  # a shard started for a resize: it waits, empty, for a map
        print(f"shardreg: shard {index} is beyond cluster.shards={config.cluster.shards}: it joins when "
              "`shardreg cluster resize` makes it part of the map", file=sys.stderr)
    check_shard_ports(config, [index])
    setup_logging(config, f"shard-{index}")
    try:
        run_shard(config, index)
    except ClusterSizeMismatch as exc:
        print(f"shardreg: {exc}", file=sys.stderr)
        return 3
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    """Write ``shard.key_secret``/``shard.key`` (or one pair per shard with ``--shards``) and
    ``gateway.key_secret``/``gateway.key``: the ``cluster.shardKey``/``gatewayKey`` files."""
    from pathlib import Path

    from common import curvekeys
    from common.privatefs import private_dir

    directory = private_dir(Path(args.dir))
    names = [f"shard-{i}" for i in range(args.shards)] if args.shards else ["shard"]
    for name in [*names, "gateway"]:
        target = directory / f"{name}.key_secret"
        if target.exists() and not args.force:
            print(f"shardreg: {target} exists (--force replaces it)", file=sys.stderr)
            return 1
        curvekeys.write_set(directory, name)
    shard_key = directory / ("shard-{index}.key_secret" if args.shards else "shard.key_secret")
    print(f'"cluster": {{"shardKey": "{shard_key}", "gatewayKey": "{directory / "gateway.key_secret"}"}}\n'
          "shards need their .key_secret and the gateway's .key; gateways their .key_secret and the shards' .key")
    return 0


def _bounded(low: int, high: int, what: str) -> type[int]:
    """An argparse ``type``: an integer in ``low..high`` (argparse names the flag in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not {what} ({low}..{high})")
        return value

    parse.__name__ = what
    return parse  # type: ignore[return-value]


PORT = _bounded(0, 65535, "a TCP port")
SHARDS = _bounded(1, 1024, "a shard count")
WORKERS = _bounded(1, 64, "a worker count")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shardreg", description="A clustered OCI registry.")
    parser.add_argument("--version", action="version", version=f"shardreg {package_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to run (shardreg COMMAND --help for its options)")

    serve = sub.add_parser("serve", help="run the embedded cluster (supervisor, shards, gateway)",
                           description="Run the embedded cluster: a supervisor, N shards and one gateway.")
    serve.add_argument("--config", help="zot-format JSON config file (default: built-in defaults)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1; http.address)")
    serve.add_argument("--port", type=PORT, help="listen port (default 8080; http.port)")
    serve.add_argument("--data", help="data directory (default ./data; storage.rootDirectory)")
    serve.add_argument("--shards", type=SHARDS, help="number of shards (default 2; cluster.shards)")
    serve.add_argument("--workers", type=WORKERS, help="gateway worker processes (default 2; cluster.gatewayWorkers)")
    serve.set_defaults(func=cmd_serve)

    gateway = sub.add_parser("gateway", help="run one gateway (as a Kubernetes gateway pod does)",
                             description="Run one gateway: Hypercorn workers routing to the shards of the config.")
    gateway.add_argument("--config", required=True, help="zot-format JSON config file")
    gateway.add_argument("--host", help="listen address (overrides http.address)")
    gateway.add_argument("--port", type=PORT, help="listen port (overrides http.port)")
    gateway.add_argument("--workers", type=WORKERS, help="worker processes (overrides cluster.gatewayWorkers)")
    gateway.set_defaults(func=cmd_gateway)

    shard = sub.add_parser("shard", help="run one shard (as a Kubernetes StatefulSet pod does)",
                           description="Run one shard: its data directory and its ZeroMQ endpoint.")
    shard.add_argument("--config", required=True, help="zot-format JSON config file")
    shard.add_argument("--index", type=_bounded(0, 1023, "a shard index"),
                       help="which shard (default: $SHARD_INDEX, else the host name's -N suffix)")
    shard.set_defaults(func=cmd_shard)

    keys = sub.add_parser("keys", help="CURVE keys of the internal wire")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, help="what to do with keys")
    generate = keys_sub.add_parser("generate", help="write a set of key files (0600, in a 0700 directory)")
    generate.add_argument("--dir", required=True, help="directory for the key files")
    generate.add_argument("--shards", type=int, default=0,
                          help="one key pair per shard (shard-<i>.key_secret); default: one pair for all shards")
    generate.add_argument("--force", action="store_true", help="replace existing key files")
    generate.set_defaults(func=cmd_keys_generate)
    add_lifecycle_parsers(sub)  # shardreg retention / gc --dry-run (common/lifecycle_cli.py)
    for name, summary in DELEGATED.items():  # listed here; parsed by their own modules (see main)
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def _bench(argv: list[str]) -> int:
    try:
        from bench.cli import main as bench_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in BENCH_EXTRAS:
            raise
        print(f"shardreg bench: the bench extras are not installed (no module {exc.name!r}); "
              "install them with: pip install 'shardreg[bench]'", file=sys.stderr)
        return 2
    return bench_main(argv)


def _user(argv: list[str]) -> int:
    from gateway.auth.users import main as user_main

    return user_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    set_umask()  # everything this process and its children create is owner-only
    if argv and argv[0] == "cluster":
        from common.cluster_cli import main as cluster_main

        return cluster_main(argv[1:])
    if argv and argv[0] in DELEGATED:
        return (_bench if argv[0] == "bench" else _user)(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        exit_code: int = args.func(args)
        return exit_code
    except ConfigError as exc:
        print(f"shardreg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except STARTUP_ERRORS as exc:
        print(f"shardreg: cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
