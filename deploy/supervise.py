"""A Lava run's lifetime: its worker processes and shared memory end with it, however the run ends.

Lava's ``Loihi2SimCfg`` forks one worker per process model plus a runtime service, and a ``multiprocessing``
shared-memory manager whose ``/dev/shm/psm_*`` segments carry the channels. Inside ``supervised()``:

- the workers are forked with SIGINT and the terminating signals held (``Run.start``); they ignore SIGINT and die
  on every terminating signal (SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2): a Ctrl-C to the process group is
  handled by the parent alone, and no worker prints a traceback. Each worker asks the kernel to SIGKILL it when its
  parent dies (``PR_SET_PDEATHSIG``), so a parent killed by SIGKILL (or by any signal it cannot handle) takes its
  workers with it;
- a terminating signal raises ``snnchip.interrupts.Terminated`` in the parent (when nobody handles it yet);
- a block that ends normally stops Lava its own way; one that ends by an exception (an interrupt, a failed
  process model, anything) terminates and reaps the workers (SIGKILL after ``GRACE_S``), shuts the manager
  down (it unlinks its segments), unlinks any segment left, and ends every other child the run started.
  An exception that is not an interrupt nor an ``SnnchipError`` becomes ``DeployError`` naming the workers'
  errors. Further signals wait until the cleanup is done;
- multiprocessing's resource tracker, which unlinks the segments of processes that die, is started with the
  terminating signals blocked, so that a signal to the whole process group does not kill it first;
- the run's segments are listed in a registry file (``REGISTRY/<pid>-<n>.json``) while it lasts; every supervised
  run first sweeps the registry: the segments of runs whose process is gone (killed before it could clean up)
  are unlinked. Only segments a snnchip run recorded are touched;
- a worker that dies while the run goes on (the kernel's out-of-memory killer, a ``kill -9``, a crash) would leave
  Lava waiting for its messages forever: a watcher thread polls the workers every ``WATCH_S`` seconds and, when one
  has ended, wakes the main thread with ``WAKE_SIGNAL``, whose handler raises ``DeployError`` naming the worker,
  how it ended and the likely cause; the run then ends as any failed run does (runs off the main thread cannot be
  woken by a signal: theirs are stopped at the program's exit, below);
- a run in a thread other than the main one cannot see signals; when the program exits (its main thread
  interrupted, or ended) such runs are stopped between two Lava steps: ``run.check()`` raises ``DeployError`` in
  the run's thread, which cleans up as above and delivers the exception to its caller.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path

from snnchip import interrupts
from snnchip.errors import DeployError, SnnchipError

GRACE_S = 2.0  # seconds a terminated worker gets to exit before SIGKILL
WATCH_S = 0.5  # seconds between two looks at the workers
# the watcher's signal to the main thread: a real-time signal unused by Python, glibc and Lava (None where the
# platform has none: no watcher there)
WAKE_SIGNAL = signal.SIGRTMIN + 4 if hasattr(signal, "SIGRTMIN") else None
STOP_WAIT_S = 10.0  # seconds the program's exit waits for a run off the main thread to stop by itself
REGISTRY = Path(tempfile.gettempdir()) / f"snnchip-lava-{os.getuid()}"
SEGMENT = re.compile(r"psm_[0-9a-f]{4,64}")  # what Python's shared_memory names a segment
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_supervising = False  # forks while set are a supervised run's workers
_forking_pid = 0  # the process that forks (set just before each fork)
_numbers = itertools.count()
_off_main: set[Run] = set()  # runs in threads other than the main one
_off_main_lock = threading.Lock()
_exit_hook = False


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _after_fork_in_child() -> None:
    if not _supervising:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in interrupts.TERMINATING:
        signal.signal(sig, signal.SIG_DFL)
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != _forking_pid:  # the parent died before the request took hold
            os._exit(1)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/PID/stat; tells a reused pid from the recorded one)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return started is None or _start_time(pid) in (None, started)


def _registry() -> Path | None:
    """The registry directory (this user's, 0700), or None where it cannot be made safely."""
    try:
        REGISTRY.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(REGISTRY)
    except OSError:
        return None
    if not os.path.isdir(REGISTRY) or os.path.islink(REGISTRY) or info.st_uid != os.getuid():
        return None
    return REGISTRY


def sweep() -> list[str]:
    """Unlink the segments recorded by supervised runs whose process is gone; return their names."""
    folder = _registry()
    swept: list[str] = []
    if folder is None:
        return swept
    for entry in folder.glob("*.json"):
        try:
            record = json.loads(entry.read_text())
            pid, started, names = int(record["pid"]), record.get("started"), list(record["segments"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid, started):
            continue
        for name in names:
            if isinstance(name, str) and SEGMENT.fullmatch(name) and _unlink(name):
                swept.append(name)
        entry.unlink(missing_ok=True)
    return swept


class Run:
    """A supervised run: ``start(process, run_cfg)`` compiles ``process`` and starts the runtime the run owns;
    ``check()`` between Lava steps raises ``DeployError`` once the run has been asked to stop."""

    def __init__(self) -> None:
        self.process: object | None = None
        self.stop_reason: str | None = None
        self.ended = threading.Event()
        self.record: Path | None = None
        self.children: set = set()  # the children that were there before the run
        self.watcher: threading.Thread | None = None
        self.unwatched = threading.Event()  # set: the watcher ends
        self.armed = False  # the wake signal raises while set

    def start(self, process: object, run_cfg: object) -> None:
        """Compile, then fork Lava's workers with SIGINT and the terminating signals held: a signal that arrived
        inside a fork would be raised in ``os.fork``'s after-fork callbacks, where Python drops it; it takes effect
        once the workers are up and their segments are recorded. In the main thread the workers are then watched."""
        self.process = process
        executable = process.compile(run_cfg)
        with interrupts.held():
            process.create_runtime(executable=executable)
            self._record()
        if threading.current_thread() is threading.main_thread() and WAKE_SIGNAL is not None:
            self.armed = True
            self.watcher = threading.Thread(target=self._watch, args=(threading.get_ident(),), daemon=True,
                                            name="snnchip-lava-watcher")
            self.watcher.start()

    def _watch(self, main: int) -> None:
        """Every ``WATCH_S``: once a worker has ended, say which and how (``stop_reason``) and wake ``main``."""
        actors = list(getattr(_infrastructure(self.process), "actors", None) or [])
        while not self.unwatched.wait(WATCH_S):
            dead = [a for a in actors if _exit_code(a) is not None]
            if dead:
                self.stop_reason = _ended(dead[0])
                signal.pthread_kill(main, WAKE_SIGNAL)
                return

    def unwatch(self) -> None:
        """End the watcher before the workers are stopped on purpose; a worker that had died raises here."""
        self.unwatched.set()
        if self.watcher is not None:
            self.watcher.join()
            self.watcher = None
        self.woken()
        self.armed = False

    def woken(self, signum: int = 0, frame: object = None) -> None:
        """``WAKE_SIGNAL``'s handler: while armed, a dead worker found by the watcher raises (once)."""
        if self.armed and self.stop_reason is not None:
            self.armed = False
            raise DeployError(self.stop_reason)

    def check(self) -> None:
        if self.stop_reason is not None:
            raise DeployError(f"the Lava run was stopped: {self.stop_reason}")

    def _record(self) -> None:
        folder = _registry()
        smm = getattr(_infrastructure(self.process), "smm", None)
        if folder is None or smm is None:
            return
        path = folder / f"{os.getpid()}-{next(_numbers)}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "started": _start_time(os.getpid()),
                                   "segments": [h.name for h in smm._shared_memory_handles]}))
        os.replace(tmp, path)
        self.record = path

    def _forget(self) -> None:
        if self.record is not None:
            self.record.unlink(missing_ok=True)


def _exit_code(proc: multiprocessing.Process) -> int | None:
    try:
        return proc.exitcode
    except (ValueError, AssertionError):  # closed (already reaped) or not our child
        return None


def _ended(proc: multiprocessing.Process) -> str:
    """What to say about a worker that ended while the run went on."""
    code = _exit_code(proc)
    how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with code {code}"
    line = f"a Lava worker (pid {proc.pid}) {how} while the run was going on"
    if code == -signal.SIGKILL:
        line += ("; the kernel's out-of-memory killer sends SIGKILL: the deployment may need more memory than this "
                 "machine has (`dmesg` tells)")
    return line


def _stop_off_main_runs() -> None:
    """At the program's exit: ask every run off the main thread to stop, wait for it, end what does not."""
    with _off_main_lock:
        runs = list(_off_main)
    for run in runs:
        run.stop_reason = "the program is exiting (its main thread was interrupted or has ended)"
    deadline = time.monotonic() + STOP_WAIT_S
    for run in runs:
        if not run.ended.wait(max(0.0, deadline - time.monotonic())):
            _teardown(run.process, run.children)  # blocked inside Lava: end its workers from here
            run._forget()


def _watch_off_main(run: Run) -> None:
    global _exit_hook
    with _off_main_lock:
        _off_main.add(run)
        if not _exit_hook:
            with contextlib.suppress(RuntimeError):  # the interpreter is already shutting down
                threading._register_atexit(_stop_off_main_runs)  # before threads are joined, as concurrent.futures
                _exit_hook = True


def _start_tracker() -> None:
    """Start multiprocessing's resource tracker (which unlinks the segments of processes that die) with the
    terminating signals blocked, which it keeps: it runs in our process group, and a signal to the group (SIGHUP
    from a closed terminal) must leave it to finish its work rather than kill it. A tracker already running is kept.
    """
    from multiprocessing import resource_tracker

    old = signal.pthread_sigmask(signal.SIG_BLOCK, interrupts.TERMINATING)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def supervised() -> Iterator[Run]:
    """Run Lava inside; see the module doc for what ends with the block."""
    global _supervising
    sweep()
    _start_tracker()
    run, outer = Run(), _supervising
    run.children = before = set(multiprocessing.active_children())
    main = threading.current_thread() is threading.main_thread()
    if not main:
        _watch_off_main(run)
    previous_wake = signal.signal(WAKE_SIGNAL, run.woken) if main and WAKE_SIGNAL is not None else None
    _supervising = True
    try:
        with interrupts.termination_raises():
            try:
                yield run
                run.unwatch()
                runtime = getattr(run.process, "runtime", None)
                if runtime is not None:
                    runtime.stop()
            except BaseException as exc:
                with interrupts.held():
                    run.armed = False
                    run.unwatch()
                    errors = _teardown(run.process, before)
                if isinstance(exc, (*interrupts.INTERRUPTS, SnnchipError)) or not isinstance(exc, Exception):
                    raise
                detail = "; ".join(errors)
                raise DeployError(f"the Lava run failed ({type(exc).__name__}: {exc})"
                                  + (f": {detail}" if detail else "")) from exc
    finally:
        _supervising = outer
        if previous_wake is not None:
            signal.signal(WAKE_SIGNAL, previous_wake)
        run._forget()
        run.ended.set()
        with _off_main_lock:
            _off_main.discard(run)


def _infrastructure(process: object | None) -> object | None:
    return getattr(getattr(process, "runtime", None), "_messaging_infrastructure", None)


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


def _process_alive(proc: multiprocessing.Process) -> bool:
    try:
        return proc.is_alive()
    except (ValueError, AssertionError):  # closed (already reaped) or not our child
        return False


def _end(procs: list[multiprocessing.Process]) -> None:
    """SIGTERM every live process, reap it; SIGKILL the ones still alive after ``GRACE_S``."""
    procs = [p for p in procs if _process_alive(p)]
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        multiprocessing.Process.join(p, max(0.0, deadline - time.monotonic()))  # Lava's join takes no timeout
        if _process_alive(p):
            p.kill()
            multiprocessing.Process.join(p)


def _unlink(name: str) -> bool:
    """Unlink segment ``name``; whether it existed."""
    try:
        segment = shared_memory.SharedMemory(name)
    except FileNotFoundError:
        return False
    segment.close()
    segment.unlink()
    return True


def _teardown(process: object | None, before: set) -> list[str]:
    """Stop everything a failed run started; return the workers' errors."""
    runtime = getattr(process, "runtime", None)
    infra = _infrastructure(process)
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
