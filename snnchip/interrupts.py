"""Interrupts end a command cleanly: SIGINT and the terminating signals become exceptions in the main thread.

SIGINT raises Python's ``KeyboardInterrupt``; inside ``termination_raises()`` SIGTERM, SIGHUP (a closed terminal or
a dropped ssh session), SIGQUIT, SIGUSR1 and SIGUSR2 raise ``Terminated`` the same way, so ``finally`` blocks and
context managers (atomic writes, Lava's workers) clean up before the process ends. A command then ends with one
line and exit code 128 + the signal's number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, ...), as shells
report signals.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

TERMINATING = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class Terminated(BaseException):
    """A terminating signal arrived (raised in the main thread while ``termination_raises()`` is active)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


INTERRUPTS = (KeyboardInterrupt, Terminated)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def termination_raises() -> Iterator[None]:
    """Inside: each ``TERMINATING`` signal raises ``Terminated`` in the main thread; the previous handlers come back
    after.

    Only a default disposition is replaced: a handler someone installed (an enclosing ``termination_raises``
    included) or an ignored signal stays as it is, and so does everything off the main thread.
    """
    if not _main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_terminated) for sig in TERMINATING
                if signal.getsignal(sig) is signal.SIG_DFL}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Inside: SIGINT and the terminating signals are held and delivered when the block ends, so a cleanup runs to
    its end."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, *TERMINATING)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])


def exit_status(exc: BaseException) -> tuple[int, str]:
    """(exit code 128 + signal number, what to say) for an interrupt: (130, "interrupted"), (143, "terminated"),
    (129, "terminated by SIGHUP"), ..."""
    if isinstance(exc, Terminated):
        return 128 + exc.signum, "terminated" if exc.signum == signal.SIGTERM else str(exc)
    return 128 + signal.SIGINT, "interrupted"
