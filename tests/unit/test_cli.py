"""The ``shardreg`` command line: every subcommand listed, a version, help on every option, and
clear errors instead of tracebacks or silent successes."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version

import pytest

from common.cli import DELEGATED, build_parser, main
from tests.cluster import ROOT


def _output(capsys, argv: list[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


def test_help_lists_every_subcommand(capsys):
    code, out = _output(capsys, ["--help"])
    assert code == 0
    for command in ("serve", "gateway", "shard", "user", "bench"):
        assert f"    {command} " in out, out


def test_version(capsys):
    code, out = _output(capsys, ["--version"])
    assert code == 0 and out.strip() == f"shardreg {version('shardreg')}"


def _parsers() -> list[argparse.ArgumentParser]:
    from bench.command import build_parser as bench_parser
    from gateway.auth.users import _parser as user_parser

    found, todo = [], [build_parser(), user_parser(), bench_parser()]
    while todo:
        parser = todo.pop()
        found.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(p for name, p in action.choices.items() if name not in DELEGATED)
    return found


def test_every_option_has_help():
    missing = [f"{parser.prog} {action.dest}" for parser in _parsers() for action in parser._actions
               if not action.help or action.help == argparse.SUPPRESS]
    assert not missing


def test_bench_without_its_extras_says_how_to_install_them():
    # an interpreter where the bench extras cannot be imported (as after `pip install shardreg`)
    code = ("import sys\n"
            "class NoExtras:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in {'rich', 'aiohttp', 'matplotlib'}:\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, NoExtras())\n"
            "from common.cli import main\n"
            "sys.exit(main(['bench', '--help']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "pip install 'shardreg[bench]'" in proc.stderr


def test_user_list_on_a_missing_file_is_an_error(tmp_path, capsys):
    missing = tmp_path / "htpasswd"
    assert main(["user", "list", "--htpasswd", str(missing)]) != 0
    assert str(missing) in capsys.readouterr().err
    assert main(["user", "remove", "alice", "--htpasswd", str(missing)]) != 0
    assert not missing.exists()
    # add creates it; then list works
    assert main(["user", "add", "alice", "--htpasswd", str(missing), "--password", "pw", "--cost", "4"]) == 0
    capsys.readouterr()
    assert main(["user", "list", "--htpasswd", str(missing)]) == 0
    assert capsys.readouterr().out.split() == ["alice"]


@pytest.mark.parametrize("argv, flag", [(["serve", "--shards", "0"], "--shards"),
                                        (["serve", "--port", "99999"], "--port"),
                                        (["serve", "--workers", "0"], "--workers"),
                                        (["gateway", "--config", "x.json", "--port", "-1"], "--port")])
def test_flags_out_of_range_are_refused(capsys, argv, flag):
    code, out = _output(capsys, argv)
    assert code == 2 and f"argument {flag}" in out
