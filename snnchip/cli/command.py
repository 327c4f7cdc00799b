"""What every command shares: the parser skeleton (``--version``, examples) and the error contract.

A command is a parser and a handler. Any ``SnnchipError`` becomes one line on stderr and exit code 2 (no
traceback); Ctrl-C ends with "interrupted" and 130, SIGTERM with "terminated" and 143, SIGHUP, SIGQUIT, SIGUSR1 and
SIGUSR2 with "terminated by SIGHUP" (...) and 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from snnchip import __version__, interrupts
from snnchip.errors import SnnchipError

Handler = Callable[[argparse.Namespace], int]


class UsageError(SnnchipError):
    """A command line argparse rejects (unknown option, invalid choice, missing or malformed value)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line naming the problem instead of the usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


def base_parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A parser with ``--version`` and the examples as its epilog; ``--help`` shows every default."""
    p = _Parser(prog=prog, description=description, epilog="examples:\n" + examples,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s (snnchip) {__version__}")
    return p


def _one_line(prog: str, show: Callable) -> Callable:
    """``warnings.showwarning`` that prints snnchip's own warnings as one line: ``PROG: warning: message``."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("snnchip"):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def run_command(parser: argparse.ArgumentParser, handler: Handler, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``handler``; the exit code of the command."""
    try:
        with interrupts.termination_raises(), warnings.catch_warnings():
            warnings.showwarning = _one_line(parser.prog, warnings.showwarning)
            return int(handler(parser.parse_args(argv)) or 0)
    except SnnchipError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except interrupts.INTERRUPTS as exc:
        code, word = interrupts.exit_status(exc)
        print(f"{parser.prog}: {word}", file=sys.stderr)
        return code
