"""Entry of ``shardreg bench`` / ``python -m bench``: checks the bench extras, then runs the command.

The bench needs packages the registry does not (``rich``, ``matplotlib``, ``aiohttp``); without
them the user gets the line that installs them, not an ``ImportError`` traceback. Nothing here
imports them, so ``common.cli`` can always import this module.
"""

from __future__ import annotations

import importlib.util
import sys

#: Import names of the ``[bench]`` extra that the bench imports.
EXTRAS = ("rich", "matplotlib", "aiohttp")
INSTALL_HINT = "pip install 'shardreg[bench]'  (from a source checkout: pip install -e '.[bench]')"


def missing_extras() -> list[str]:
    """The bench extras that cannot be imported here."""
    missing = []
    for name in EXTRAS:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or half-installed package
            found = False
        if not found:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    missing = missing_extras()
    if missing:
        print(f"shardreg bench needs the bench extras, and {', '.join(missing)} "
              f"{'is' if len(missing) == 1 else 'are'} not installed. Install them with:\n"
              f"    {INSTALL_HINT}", file=sys.stderr)
        return 2
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["reshard"]:  # a scenario of its own (issue 12): bench/reshard.py
        from bench.reshard import main as reshard_main

        return reshard_main(args[1:])
    if args[:1] == ["pull-through"]:  # a scenario of its own (issue 13): bench/pullthrough.py
        from bench.pullthrough import main as pullthrough_main

        return pullthrough_main(args[1:])
    if args[:1] == ["scale"]:  # how the costs grow with the registry's size (issue 17): bench/scale.py
        from bench.scale import main as scale_main

        return scale_main(args[1:])
    from bench.command import main as command_main

    return command_main(argv)
