"""Interrupting a Lava run, however: one line, exit 128 + signal, no process or /dev/shm segment left; SIGKILL, runs in
a thread and failures end too.

Each run is a real ``snn-run --backend lava`` in its own session; what it leaves is read from /proc: the processes
of that session, and the /dev/shm/psm_* segments its processes had mapped while the run was going.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from nir_nets import mlp_graph

from snnchip.export.loihi import export_loihi

pytestmark = pytest.mark.lava
SNN_RUN = str(Path(sys.executable).with_name("snn-run"))


def _session(sid: int) -> list[int]:
    """Pids of the processes in session ``sid`` (field 6 of /proc/PID/stat)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


def _kill_session(sid: int) -> list[int]:
    """SIGKILL what is left of session ``sid`` once it had 10 s to end; return the pids that were left."""
    deadline = time.monotonic() + 10  # the resource tracker leaves when the last holder of its pipe has gone
    while _session(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _session(sid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def _segments(pids: list[int]) -> set[str]:
    """The /dev/shm/psm_* files these processes have mapped."""
    out = set()
    for pid in pids:
        try:
            out |= {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
                    if "/dev/shm/psm_" in line}
        except OSError:
            continue
    return out


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """A deploy directory and an input that keeps Lava busy for about a minute (30 ms per sample)."""
    d = tmp_path_factory.mktemp("interrupt")
    export_loihi(mlp_graph((4, 6, 3), T=4), d / "dep")
    np.save(d / "x.npy", np.random.default_rng(0).uniform(0, 1, (4, 2000, 4)))
    return d


def _as_from_a_terminal() -> None:
    """The child's SIGINT and SIGQUIT as a terminal's foreground job has them: a shell that started the test suite in
    the background set them to ignored, and an ignored signal stays ignored across fork and exec."""
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def _started(argv: list[str]) -> tuple[subprocess.Popen, set[str]]:
    """``argv`` started in a session of its own, once Lava's workers run and their channels are mapped; the
    /dev/shm segments they use."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)
    deadline, used = time.monotonic() + 60, set()
    while time.monotonic() < deadline and (len(_session(proc.pid)) < 8 or not used):
        time.sleep(0.2)
        used = _segments(_session(proc.pid))
    if proc.poll() is not None or not used:
        _kill_session(proc.pid)
        raise AssertionError("the Lava run did not start")
    time.sleep(0.5)
    return proc, used


def _stale(used: set[str]) -> list[str]:
    """The segments of ``used`` still in /dev/shm (removed, so that a failure leaves nothing behind)."""
    stale = [s for s in used if os.path.exists(s)]
    for path in stale:
        os.unlink(path)
    return stale


@pytest.mark.parametrize("sig,group,code,line", [
    (signal.SIGINT, True, 130, "snn-run: interrupted"),  # Ctrl-C: the whole process group
    (signal.SIGTERM, False, 143, "snn-run: terminated"),  # kill PID
    (signal.SIGTERM, True, 143, "snn-run: terminated"),  # kill -TERM -PGID (a job controller)
    (signal.SIGHUP, True, 129, "snn-run: terminated by SIGHUP"),  # the terminal closed, the ssh session dropped
    (signal.SIGQUIT, False, 131, "snn-run: terminated by SIGQUIT"),  # Ctrl-\\
])
def test_a_signal_during_a_lava_run_ends_it_cleanly(long_run, sig, group, code, line):
    proc, used = _started([SNN_RUN, str(long_run / "dep"), "--input", str(long_run / "x.npy"), "--out",
                           str(long_run / "y.npz"), "--backend", "lava"])
    try:
        (os.killpg if group else os.kill)(proc.pid, sig)
        err = proc.communicate(timeout=20)[1].decode()  # EOF on stderr: no worker holds it any more
    finally:
        left = _kill_session(proc.pid)
    assert (proc.returncode, err) == (code, line + "\n")
    assert left == [] and _stale(used) == []


def test_a_lava_run_killed_by_sigkill_takes_its_workers_and_segments_with_it(long_run):
    """SIGKILL cannot be handled: the workers die with their parent (PR_SET_PDEATHSIG), the segments go with the
    last process that held them, and the run's registry entry is swept by the next run."""
    from snnchip.deploy import supervise

    proc, used = _started([SNN_RUN, str(long_run / "dep"), "--input", str(long_run / "x.npy"), "--out",
                           str(long_run / "y.npz"), "--backend", "lava"])
    record = supervise.REGISTRY / f"{proc.pid}-0.json"
    try:
        assert record.exists() and {f"/dev/shm/{n}" for n in json.loads(record.read_text())["segments"]} >= used
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=20)
    finally:
        left = _kill_session(proc.pid)
    assert left == [] and _stale(used) == []
    supervise.sweep()
    assert not record.exists()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_lava_worker_that_dies_ends_the_run_with_one_line_instead_of_a_hang(long_run):
    """A worker killed as the out-of-memory killer kills (SIGKILL) would leave Lava waiting for it forever: the run
    ends within seconds with exit 2 and one line naming the worker and the signal; nothing is left."""
    proc, used = _started([SNN_RUN, str(long_run / "dep"), "--input", str(long_run / "x.npy"), "--out",
                           str(long_run / "y.npz"), "--backend", "lava"])
    try:
        workers = [pid for pid in _session(proc.pid) if pid != proc.pid and "resource_tracker" not in _cmdline(pid)]
        os.kill(workers[-1], signal.SIGKILL)
        err = proc.communicate(timeout=30)[1].decode()
    finally:
        left = _kill_session(proc.pid)
    assert proc.returncode == 2, err
    assert err.startswith(f"snn-run: error: a Lava worker (pid {workers[-1]}) was killed by SIGKILL while the run "
                          "was going on; the kernel's out-of-memory killer") and err.count("\n") == 1, err
    assert left == [] and _stale(used) == [] and not (long_run / "y.npz").exists()


def test_the_sweep_removes_only_segments_of_runs_that_are_gone(tmp_path, monkeypatch):
    from multiprocessing import resource_tracker, shared_memory

    from snnchip.deploy import supervise

    monkeypatch.setattr(supervise, "REGISTRY", tmp_path / "registry")
    orphan, owned, foreign = (shared_memory.SharedMemory(create=True, size=64) for _ in range(3))
    for seg in (orphan, owned, foreign):
        resource_tracker.unregister(seg._name, "shared_memory")  # left to the sweep, as a killed run's are
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = supervise._registry()
    (folder / "dead.json").write_text(json.dumps({"pid": int(dead.stdout), "started": "1", "segments":
                                                  [orphan.name, "../../etc/passwd", "psm_0000"]}))
    (folder / "alive.json").write_text(json.dumps({"pid": os.getpid(), "started": supervise._start_time(os.getpid()),
                                                   "segments": [owned.name]}))
    (folder / "junk.json").write_text("{not json")
    try:
        assert supervise.sweep() == [orphan.name]
        assert not Path(f"/dev/shm/{orphan.name}").exists()
        assert Path(f"/dev/shm/{owned.name}").exists() and Path(f"/dev/shm/{foreign.name}").exists()
        assert sorted(p.name for p in folder.iterdir()) == ["alive.json", "junk.json"]
    finally:
        for seg in (orphan, owned, foreign):
            seg.close()
            if Path(f"/dev/shm/{seg.name}").exists():
                seg.unlink()


THREAD = """
import sys, threading, numpy as np
from snnchip.deploy import build

def work():
    try:
        build(sys.argv[1]).run(np.random.default_rng(0).uniform(0, 1, (4, 2000, 4)), states=False)
        print("result", flush=True)
    except BaseException as exc:
        print(type(exc).__name__ + ": " + str(exc), flush=True)

thread = threading.Thread(target=work, daemon=sys.argv[2] == "daemon")
thread.start()
thread.join()
"""


@pytest.mark.parametrize("daemon", [False, True], ids=["thread", "daemon-thread"])
def test_a_lava_run_in_a_thread_is_stopped_and_its_exception_delivered(long_run, daemon):
    """Ctrl-C reaches the main thread only; when the program exits, the run in the other thread stops between
    two steps and its caller gets a DeployError; nothing is left and nothing is printed at exit but the program's
    own KeyboardInterrupt."""
    proc, used = _started([sys.executable, "-c", THREAD, str(long_run / "dep"), "daemon" if daemon else "plain"])
    try:
        os.kill(proc.pid, signal.SIGINT)
        out, err = (b.decode() for b in proc.communicate(timeout=30))
    finally:
        left = _kill_session(proc.pid)
    assert out == "DeployError: the Lava run was stopped: the program is exiting (its main thread was interrupted " \
        "or has ended)\n", out
    assert err.strip().splitlines()[-1] == "KeyboardInterrupt" and "Exception ignored" not in err, err
    assert left == [] and _stale(used) == []


def test_an_exception_of_any_type_in_lava_ends_the_run_with_a_deploy_error(tmp_path):
    """A process model that fails while Lava builds it (in its worker, re-raised in the parent as itself)."""
    export_loihi(mlp_graph((4, 6, 3), T=4), tmp_path / "dep")
    script = textwrap.dedent(f"""
        import glob, multiprocessing, numpy as np
        from snnchip.deploy import build
        from snnchip.deploy.procs.cubalif import models
        from snnchip.errors import DeployError

        def broken(self, *args, **kwargs):
            raise TypeError("injected: a parameter of the wrong type")

        models.PyCubaLIFModelFixed.__init__ = broken
        try:
            build({str(tmp_path / "dep")!r}).run(np.ones((4, 3, 4)), states=False)
        except DeployError as exc:
            print("DeployError:", exc)
        print("children:", len(multiprocessing.active_children()))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_as_from_a_terminal)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        left = _kill_session(proc.pid)
    assert left == []
    assert "DeployError: the Lava run failed (TypeError: injected: a parameter of the wrong type)" in out
    assert "children: 0" in out and proc.returncode == 0


def _descendants(pid: int) -> list[int]:
    """Pids of every process below ``pid`` (torchrun starts its ranks in sessions of their own)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parent.items() if p in frontier]
        found += kids
        frontier = kids
    return found


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_data_parallel_training_run_ends_with_all_its_ranks(tmp_path, sig, code, word):
    """``snn-train --nproc 2`` runs torchrun; a signal to snn-train reaches torchrun, which stops both ranks: none of
    the run's processes is left, one line, exit 128 + signal."""
    snn_train = str(Path(sys.executable).with_name("snn-train"))
    proc = subprocess.Popen([snn_train, "--nproc", "2", "--out", str(tmp_path / "run"), "--epochs", "10000",
                             "--quiet", "--device", "cpu"], stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)
    below: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(below) < 3 and time.monotonic() < deadline:  # torchrun and its two ranks
            time.sleep(0.2)
            below = _descendants(proc.pid)
        assert len(below) >= 3, "the ranks did not start"
        time.sleep(3)
        below = _descendants(proc.pid)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        left = [p for p in below if Path(f"/proc/{p}").exists()]
        for p in left:
            os.kill(p, signal.SIGKILL)
        _kill_session(proc.pid)
    assert left == []
    assert proc.returncode == code and err.strip().splitlines()[-1] == f"snn-train: {word}", err[-2000:]
