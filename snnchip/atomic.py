"""Atomic writes: a file or directory appears complete under its final name, or not at all.

A crash or exception mid-write leaves whatever was at the destination before untouched. Temp names carry the
writer's pid (``.NAME.PID.XXXXXXXX.tmp``, ``.NAME.PID.XXXXXXXX.old`` for a directory being replaced): the next
write to the same destination removes those of writers that are no longer running (a kill -9 leaves them
behind), and puts back a directory whose replacement a dead writer had not finished. What is written gets the
permissions a plain ``open``/``mkdir`` would give (0666/0777 less the umask), or those of the file or directory
it replaces. A write that fails for want of space, or whose destination cannot be created (a directory where a
file is to go, a file where a folder is needed, no permission), raises ``OutputError`` naming the destination.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from snnchip.errors import OutputError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode(dest: Path, default: int) -> int:
    """The permissions the result gets: those of what it replaces, else ``default`` less the umask."""
    try:
        return stat.S_IMODE(dest.stat().st_mode)
    except OSError:
        return default & ~_umask()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _clean_stale(dest: Path) -> None:
    """Remove the temp files and directories of dead writers to ``dest``; restore a directory one of them had
    moved aside and not yet replaced."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(\d+)\.[a-z0-9_]{{8}}\.(tmp|old)")
    with contextlib.suppress(OSError):
        for entry in dest.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match is None or _alive(int(match.group(1))):
                continue
            if match.group(2) == "old" and not dest.exists() and (entry / "d").is_dir():
                os.replace(entry / "d", dest)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it arose from is a full disk (errno, or the text HDF5 and torch give)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (isinstance(exc, OSError) and exc.errno in NO_SPACE) or "no space left on device" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _failed(dest: Path, what: str, exc: BaseException) -> OutputError:
    kept = "the previous one is kept" if dest.exists() else "nothing was written"
    if _no_space(exc):
        return OutputError(f"{dest}: no space left on device while writing {what}; {kept}")
    return OutputError(f"{dest}: cannot write {what} ({getattr(exc, 'strerror', None) or exc}); {kept}")


def check_destination(path: str | os.PathLike, directory: bool = False) -> None:
    """Refuse (``OutputError``) a ``path`` that cannot become a file (a directory when ``directory``): a directory
    where a file is to go, a file where a directory is, a file where one of its folders is to be. Commands call it
    on their outputs before any work, so that a long run does not end in an unwritable destination."""
    dest = Path(path)
    if dest.is_dir() and not directory:
        raise OutputError(f"{dest}: is a directory; name a file to write")
    if dest.exists() and not dest.is_dir() and directory:
        raise OutputError(f"{dest}: exists and is not a directory; name a directory to write")
    blocker = next((p for p in dest.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"{dest}: cannot create its folder: {blocker} is a file")


def _prepare(dest: Path, directory: bool) -> None:
    """Check that ``dest`` can become a file (a directory when ``directory``) and create its folder."""
    check_destination(dest, directory)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot create its folder {dest.parent} ({exc.strerror or exc})") from None
    _clean_stale(dest)


def _temp_prefix(dest: Path) -> str:
    return f".{dest.name}.{os.getpid()}."


@contextlib.contextmanager
def _written(dest: Path, tmp: Path, what: str, commit: Callable[[], None]) -> Iterator[Path]:
    """Yield ``tmp`` for the caller to fill, then ``commit()`` it onto ``dest``: a full disk while filling, or
    any OS error while committing, becomes ``OutputError`` naming ``dest``."""
    try:
        yield tmp
    except Exception as exc:
        if _no_space(exc):
            raise _failed(dest, what, exc) from exc
        raise
    try:
        commit()
    except OSError as exc:
        raise _failed(dest, what, exc) from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the destination's directory; rename it onto ``path`` on success.

    The caller writes the whole file to the yielded path. On an exception the temp file is removed
    and ``path`` keeps its previous content.
    """
    dest = Path(path)
    _prepare(dest, directory=False)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise _failed(dest, "a file", exc) from None
    os.close(fd)
    tmp_path = Path(tmp)

    def commit() -> None:
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _mode(dest, 0o666))
        os.replace(tmp_path, dest)

    try:
        with _written(dest, tmp_path, "the file", commit) as written:
            yield written
    finally:
        tmp_path.unlink(missing_ok=True)


class StagedDir:
    """A directory written under a temporary name beside ``path`` (``.NAME.PID.XXXXXXXX.tmp``) and moved into place
    by ``commit()`` only when the caller decides it is complete; ``discard()`` (after a commit: nothing) removes it.
    An existing directory at ``path`` is replaced only by the commit; until then it is left as it was."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.dest = Path(path)
        _prepare(self.dest, directory=True)
        try:
            self.path = Path(tempfile.mkdtemp(prefix=_temp_prefix(self.dest), suffix=".tmp", dir=self.dest.parent))
        except OSError as exc:
            raise _failed(self.dest, "a directory", exc) from None

    def _swap(self) -> None:
        os.chmod(self.path, _mode(self.dest, 0o777))
        if self.dest.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(self.dest), suffix=".old", dir=self.dest.parent))
            os.replace(self.dest, old / "d")
            os.replace(self.path, self.dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.dest)

    def commit(self) -> None:
        """Move the staged directory onto ``path`` (an OS error becomes ``OutputError`` naming ``path``)."""
        try:
            self._swap()
        except OSError as exc:
            raise _failed(self.dest, "the directory", exc) from exc

    def discard(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    @contextlib.contextmanager
    def discarded_on_failure(self) -> Iterator[None]:
        """Discard the staged directory if the body raises (anything, interrupts included), then re-raise."""
        try:
            yield
        except BaseException:
            self.discard()
            raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temp directory beside ``path``; swap it in place of ``path`` on success.

    An existing directory at ``path`` is replaced only after the new one is complete; on an
    exception the temp directory is deleted and the old one is left as it was.
    """
    staged = StagedDir(path)
    try:
        with _written(staged.dest, staged.path, "the directory", staged._swap) as written:
            yield written
    finally:
        staged.discard()


def write_bytes_atomic(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    write_bytes_atomic(path, text.encode("utf-8"))
