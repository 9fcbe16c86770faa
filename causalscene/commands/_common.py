"""The flags every verb shares and the one way verbs print (private: not a verb).

The convention (README, verb table):

- every verb takes ``--seed``; verbs that run torch take ``--device`` (default ``auto``: CUDA when
  available); ``dag``, ``query``, ``report`` and ``procgen`` never touch torch, so they have no
  ``--device`` rather than one that does nothing;
- every verb that prints results takes ``--json``: one strict JSON document on stdout
  (:func:`print_json`; NaN and Infinity print as ``null``);
- every long verb takes ``--no-progress``;
- tables go through :func:`console`, which does not cut them to 80 columns when stdout is a pipe.

Nothing heavy is imported here at module level (``causalscene --help`` stays fast).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from argparse import ArgumentParser

    from rich.console import Console

#: console width when stdout is not a terminal: rich would otherwise assume 80 columns and cut
#: tables; a table is only as wide as its content, so a large width costs nothing
PIPE_WIDTH = 1000


def add_seed(p: ArgumentParser, default: int = 0, used: bool = True) -> None:
    """``--seed K``; ``used=False`` for a deterministic verb, which says so in its help."""
    help_text = "random seed" if used else "accepted by every verb; this one is deterministic"
    p.add_argument("--seed", type=int, default=default, help=f"{help_text} (default: {default})")


def add_device(p: ArgumentParser, default: str = "auto") -> None:
    p.add_argument(
        "--device",
        default=default,
        help=f"auto | cpu | cuda[:K] (default: {default}; auto: CUDA when available, else CPU)",
    )


def add_json(p: ArgumentParser, what: str = "the result", always: bool = False) -> None:
    """``--json``; ``always=True`` for a verb whose result is JSON anyway (the flag then only makes
    it one compact line, or applies to the verb's other outputs), which its help says."""
    note = "; this verb prints JSON without the flag too" if always else ""
    p.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as one strict JSON document on stdout{note}",
    )


def add_no_progress(p: ArgumentParser, draws_bar: bool = True) -> None:
    """``--no-progress``. A long verb that draws no progress bar today (``draws_bar=False``) still
    takes the flag, so scripts can pass it to every long verb, and says so in its help."""
    note = "" if draws_bar else " (this verb draws none today)"
    p.add_argument("--no-progress", action="store_true", help=f"no progress bars on stderr{note}")


def add_generator(p: ArgumentParser, run_help: str) -> None:
    """The generator an analysing verb reads: positional ``RUN`` (optional) or ``--generator
    SPEC``, exactly one of them (:func:`generator_spec`)."""
    p.add_argument("run", nargs="?", default=None, metavar="RUN", help=run_help)
    p.add_argument(
        "--generator",
        default=None,
        metavar="SPEC",
        help="a generator from outside instead of RUN: module:factory, file.py:factory (factory() "
        "returns an nn.Module with decode, sample_latents, latent_dim) or a TorchScript FILE.pt",
    )


def generator_spec(args: Any) -> str:
    """``RUN`` or ``--generator``; ``ValueError`` unless exactly one is given."""
    if (args.run is None) == (args.generator is None):
        raise ValueError("give exactly one of RUN and --generator SPEC")
    return str(args.run if args.run is not None else args.generator)


def console(stderr: bool = False) -> Console:
    """The rich console every verb prints with: the terminal's width on a terminal, else
    :data:`PIPE_WIDTH` (and no colour codes), so piped tables keep every column.

    A closed pipe raises ``BrokenPipeError`` to ``cli.main`` like any other write does (rich's own
    handler would exit with status 1 instead of the CLI's 141)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    stream = sys.stderr if stderr else sys.stdout
    return _Console(file=stream, width=None if stream.isatty() else PIPE_WIDTH)


def print_json(obj: Any, indent: int | None = None) -> None:
    """``obj`` as strict JSON on stdout (:func:`causalscene.utils.dumps`)."""
    from causalscene.utils import dumps

    print(dumps(obj, indent=indent))
