"""The ``causalscene`` command.

Each verb lives in a module of :mod:`causalscene.commands` that defines ``register(subparsers)``;
the parser it adds sets ``func`` (called with the parsed args, returns an exit status). Errors of
the user's making (``ValueError``, ``FileNotFoundError``) print one line and exit with status 2.
A reader that goes away (``causalscene ... --json | head``) ends the command quietly with status
141 (128 + SIGPIPE, what a shell reports for ``yes | head`` under ``set -o pipefail``): the output
was cut short, which 0 would hide, but no traceback is printed. The flags every verb shares and
the one console they print with are in :mod:`causalscene.commands._common`.

Building the parser imports every verb module, so those import nothing heavy (torch, pyro, pgmpy,
matplotlib) at module level: ``causalscene --help`` answers in well under a second, and each verb
imports what it needs when it runs (``tests/test_cli_fast.py``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence

import causalscene.commands as commands_pkg
from causalscene import __version__

log = logging.getLogger("causalscene")

#: exit status when stdout's reader has gone away (128 + SIGPIPE)
EXIT_BROKEN_PIPE = 141


class UsageError(ValueError):
    """A command-line argument is wrong; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="causalscene", description="Causal generative modelling of images."
    )
    parser.add_argument("--version", action="version", version=f"causalscene {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in verb_modules():
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    return parser


def verb_modules() -> list[str]:
    """Names of the modules of :mod:`causalscene.commands` (sorted; private ones left out)."""
    found = pkgutil.iter_modules(commands_pkg.__path__)
    return sorted(f"{commands_pkg.__name__}.{m.name}" for m in found if not m.name.startswith("_"))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def run_script(entry: Callable[[], object]) -> int:
    """The exit status of a script's ``entry()`` (0 unless it returns an int), with stdout's
    reader gone (``script | head``) as :func:`main` has it: no traceback, status 141. For
    ``sys.exit(run_script(main))`` in the benchmark scripts."""
    try:
        code = entry()
        sys.stdout.flush()  # a closed pipe raises here, not at interpreter exit
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def _run(argv: Sequence[str] | None) -> int:
    import warnings

    # pgmpy 1.1 announces its own deprecations on import; they are not the user's concern.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pgmpy\.")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    finally:  # --help, --version and usage errors exit here: their output meets a closed pipe now
        sys.stdout.flush()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe raises here, inside main, not at interpreter exit
        return code
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"causalscene {args.verb}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered does
    not raise a second ``BrokenPipeError`` (the recipe of Python's ``signal`` documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no file (a test's capture)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
