"""The ``causalscene`` command.

Each verb lives in a module of :mod:`causalscene.commands` that defines ``register(subparsers)``;
the parser it adds sets ``func`` (called with the parsed args, returns an exit status). Errors of
the user's making (``ValueError``, ``FileNotFoundError``) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import causalscene.commands as commands_pkg
from causalscene import __version__

log = logging.getLogger("causalscene")


class UsageError(ValueError):
    """A command-line argument is wrong; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="causalscene", description="Causal generative modelling of images."
    )
    parser.add_argument("--version", action="version", version=f"causalscene {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    # pgmpy 1.1 announces its own deprecations on import; they are not the user's concern.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pgmpy\.")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"causalscene {args.verb}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
