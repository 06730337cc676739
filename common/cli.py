"""The ``shardreg`` command.

    shardreg serve [--config F] [--host H] [--port P] [--data DIR] [--shards N] [--workers W]
    shardreg gateway --config F         one gateway (Hypercorn, W workers), as a Kubernetes pod runs it
    shardreg shard --config F --index I one shard, as a StatefulSet pod runs it
    shardreg keys generate --dir D [--shards N]   CURVE key files for the internal wire
    shardreg bench ...                  the load benchmark (see bench/)
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys

from common.config import Config, ConfigError, load_config, with_overrides
from common.logs import report_warnings, setup_logging
from common.privatefs import set_umask


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
    setup_logging(config, "gateway")
    report_warnings(config, "gateway")
    return run_gateway(config) or 0


def cmd_shard(args: argparse.Namespace) -> int:
    from shard.metastore import ClusterSizeMismatch
    from shard.server import run_shard

    config = _load(args)
    index = _shard_index(args)
    if not 0 <= index < config.cluster.shards:
        raise ConfigError(f"shard index {index} is outside 0..{config.cluster.shards - 1}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shardreg", description="A clustered OCI registry.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the embedded cluster (supervisor, shards, gateway)")
    serve.add_argument("--config", help="zot-format JSON config file")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--data", help="data directory (default ./data)")
    serve.add_argument("--shards", type=int, help="number of shards (default 2)")
    serve.add_argument("--workers", type=int, help="gateway worker processes (default 2)")
    serve.set_defaults(func=cmd_serve)

    gateway = sub.add_parser("gateway", help="run one gateway")
    gateway.add_argument("--config", required=True)
    gateway.add_argument("--host")
    gateway.add_argument("--port", type=int)
    gateway.add_argument("--workers", type=int)
    gateway.set_defaults(func=cmd_gateway)

    shard = sub.add_parser("shard", help="run one shard")
    shard.add_argument("--config", required=True)
    shard.add_argument("--index", type=int)
    shard.set_defaults(func=cmd_shard)

    keys = sub.add_parser("keys", help="CURVE keys of the internal wire")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    generate = keys_sub.add_parser("generate", help="write a set of key files (0600, in a 0700 directory)")
    generate.add_argument("--dir", required=True, help="directory for the key files")
    generate.add_argument("--shards", type=int, default=0,
                          help="one key pair per shard (shard-<i>.key_secret); default: one pair for all shards")
    generate.add_argument("--force", action="store_true", help="replace existing key files")
    generate.set_defaults(func=cmd_keys_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    set_umask()  # everything this process and its children create is owner-only
    if argv and argv[0] == "bench":
        from bench.cli import main as bench_main

        return bench_main(argv[1:])
    if argv and argv[0] == "user":
        from gateway.auth.users import main as user_main

        return user_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        exit_code: int = args.func(args)
        return exit_code
    except ConfigError as exc:
        print(f"shardreg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
