"""One writer per output directory: an advisory lock held for a whole run.

``exclusive(dir, command)`` takes ``flock(LOCK_EX | LOCK_NB)`` on ``dir/.snnchip.lock`` and writes the holder's
pid and command there. A second run on the same directory is refused at once with ``OutputError`` naming the
holder. The kernel drops the lock when its holder exits, however it exits (kill -9 included), so a lock of a
dead process never blocks: the next run simply takes it. The file stays (removing it would let two runs lock two
different files).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from snnchip.atomic import NO_SPACE
from snnchip.errors import OutputError

LOCK_NAME = ".snnchip.lock"


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold the lock of ``directory`` (created if needed) for the block; refuse if another process holds it."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the run directory ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise OutputError(f"{path}: {holder} is writing to this directory; wait for it to end or choose another "
                              "output directory") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{command} (pid {os.getpid()})\n".encode(), 0)
        except OSError as exc:
            why = "no space left on device" if exc.errno in NO_SPACE else exc.strerror or str(exc)
            raise OutputError(f"{path / LOCK_NAME}: cannot record this run in its lock file ({why}); free space or "
                              "choose another output directory") from None
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
