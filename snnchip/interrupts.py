"""Interrupts end a command cleanly: SIGINT and SIGTERM become exceptions in the main thread.

SIGINT raises Python's ``KeyboardInterrupt``; inside ``sigterm_raises()`` SIGTERM raises ``Terminated`` the same
way, so ``finally`` blocks and context managers (atomic writes, Lava's workers) clean up before the process ends.
A command then ends with one line and exit code 128 + the signal's number (130, 143), as shells report signals.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(BaseException):
    """SIGTERM arrived (raised in the main thread while ``sigterm_raises()`` is active)."""


INTERRUPTS = (KeyboardInterrupt, Terminated)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated("terminated")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside: SIGTERM raises ``Terminated`` in the main thread; the previous handler comes back after.

    Only a default SIGTERM disposition is replaced: a handler someone installed (an enclosing ``sigterm_raises``
    included) or an ignored SIGTERM stays as it is, and so does everything off the main thread.
    """
    if not _main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM are held and delivered when the block ends, so a cleanup runs to its end."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])


def exit_status(exc: BaseException) -> tuple[int, str]:
    """(exit code 128 + signal number, word) for an interrupt: (130, "interrupted") or (143, "terminated")."""
    if isinstance(exc, Terminated):
        return 128 + signal.SIGTERM, "terminated"
    return 128 + signal.SIGINT, "interrupted"
