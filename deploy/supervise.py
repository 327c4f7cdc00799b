"""A Lava run's lifetime: its worker processes and shared memory end with it, however the run ends.

Lava's ``Loihi2SimCfg`` forks one worker per process model plus a runtime service, and a ``multiprocessing``
shared-memory manager whose ``/dev/shm/psm_*`` segments carry the channels. Inside ``supervised()``:

- the workers are forked with SIGINT and SIGTERM held (``Run.start``); they ignore SIGINT and die on SIGTERM:
  a Ctrl-C to the process group is handled by the parent alone, and no worker prints a traceback;
- SIGTERM raises ``snnchip.interrupts.Terminated`` in the parent (when nobody handles SIGTERM yet);
- a block that ends normally stops Lava its own way; one that ends by an exception (an interrupt, a failed
  process model, anything) terminates and reaps the workers (SIGKILL after ``GRACE_S``), shuts the manager
  down (it unlinks its segments), unlinks any segment left, and ends every other child the run started.
  An exception that is not an interrupt nor an ``SnnchipError`` becomes ``DeployError`` naming the workers'
  errors. Further signals wait until the cleanup is done.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing import shared_memory

from snnchip import interrupts
from snnchip.errors import DeployError, SnnchipError

GRACE_S = 2.0  # seconds a terminated worker gets to exit before SIGKILL
_supervising = False  # forks while set are a supervised run's workers


def _after_fork_in_child() -> None:
    if _supervising:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_after_fork_in_child)


class Run:
    """A supervised run: ``start(process, run_cfg)`` compiles ``process`` and starts the runtime the run owns."""

    def __init__(self) -> None:
        self.process: object | None = None

    def start(self, process: object, run_cfg: object) -> None:
        """Compile, then fork Lava's workers with SIGINT and SIGTERM held: a signal that arrived inside a fork
        would be raised in ``os.fork``'s after-fork callbacks, where Python drops it; it takes effect once the
        workers are up."""
        self.process = process
        executable = process.compile(run_cfg)
        with interrupts.held():
            process.create_runtime(executable=executable)


@contextlib.contextmanager
def supervised() -> Iterator[Run]:
    """Run Lava inside; see the module doc for what ends with the block."""
    global _supervising
    run, before, outer = Run(), set(multiprocessing.active_children()), _supervising
    _supervising = True
    try:
        with interrupts.sigterm_raises():
            try:
                yield run
                runtime = getattr(run.process, "runtime", None)
                if runtime is not None:
                    runtime.stop()
            except BaseException as exc:
                with interrupts.held():
                    errors = _teardown(run.process, before)
                if isinstance(exc, (*interrupts.INTERRUPTS, SnnchipError)) or not isinstance(exc, Exception):
                    raise
                detail = "; ".join(errors)
                raise DeployError(f"the Lava run failed ({type(exc).__name__}: {exc})"
                                  + (f": {detail}" if detail else "")) from exc
    finally:
        _supervising = outer


def _worker_errors(actors: list) -> list[str]:
    """The exceptions Lava's workers reported through their pipes, as 'Type: message' (Lava only logs them)."""
    out = []
    for actor in actors:
        try:
            exc = actor.exception
        except Exception:  # a closed or broken pipe: nothing more to learn
            continue
        if exc:
            out.append(f"{type(exc[0]).__name__}: {exc[0]}")
    return out


def _alive(proc: multiprocessing.Process) -> bool:
    try:
        return proc.is_alive()
    except (ValueError, AssertionError):  # closed (already reaped) or not our child
        return False


def _end(procs: list[multiprocessing.Process]) -> None:
    """SIGTERM every live process, reap it; SIGKILL the ones still alive after ``GRACE_S``."""
    procs = [p for p in procs if _alive(p)]
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        multiprocessing.Process.join(p, max(0.0, deadline - time.monotonic()))  # Lava's join takes no timeout
        if _alive(p):
            p.kill()
            multiprocessing.Process.join(p)


def _unlink(name: str) -> None:
    try:
        segment = shared_memory.SharedMemory(name)
    except FileNotFoundError:
        return
    segment.close()
    segment.unlink()


def _teardown(process: object | None, before: set) -> list[str]:
    """Stop everything a failed run started; return the workers' errors."""
    runtime = getattr(process, "runtime", None)
    infra = getattr(runtime, "_messaging_infrastructure", None)
    actors = list(getattr(infra, "actors", None) or [])
    errors = _worker_errors(actors)
    _end(actors)
    smm = getattr(infra, "smm", None)
    if smm is not None:
        names = [h.name for h in smm._shared_memory_handles]
        manager, smm._manager = smm._manager, None  # Lava's own shutdown would first close mapped handles
        if manager is not None:
            manager.shutdown()  # the manager unlinks the segments it made
        for name in names:
            _unlink(name)
    if runtime is not None:
        runtime._is_running = runtime._is_started = False  # so that Lava's __del__ does not wait for them
    _end([p for p in multiprocessing.active_children() if p not in before])
    return errors
