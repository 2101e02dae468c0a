"""Processes a test starts: triggered by events in the run (a file written, a held checkpoint), never by
racing a clock, and always stopped with everything they started, even when the test fails.

``Started(args)`` runs ``python -m diptych ARGS`` in its own session (process group), its output in
temporary files (no pipe to fill up while the test waits); used as a context manager it kills the
process and every descendant it was seen with on the way out. ``hold=(marker, where)`` loads
``tests/hold/sitecustomize.py``: the run stops at its first mid-epoch checkpoint at or after step ``where``
(or, ``where="pack"``, a pack before its rename) and writes ``marker`` (see that file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

HOLD_DIR = Path(__file__).with_name("hold")


class Started:
    def __init__(self, args: list[str], env: dict | None = None, hold: tuple[Path, int | str] | None = None):
        env = {**os.environ, **(env or {})}
        if hold is not None:
            marker, where = hold
            env["DIPTYCH_TEST_HOLD"] = f"{marker}:{where}"
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOLD_DIR), env.get("PYTHONPATH")) if p)
        self._out, self._err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        # A shell without job control starts background jobs with SIGINT ignored, and an ignored signal stays
        # ignored across exec. A handled one is reset to the default: handled here while the run starts, it
        # gets Python's own Ctrl-C handling, as from a terminal.
        main = threading.current_thread() is threading.main_thread()
        ignored = main and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        if ignored:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "diptych", *args],
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=self._err,
                text=True,
                env=env,
                start_new_session=True,
            )
        finally:
            if ignored:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._seen: dict[int, psutil.Process] = {}

    def descendants(self) -> list[psutil.Process]:
        """The processes below this one now (remembered, to be stopped at the end even if orphaned)."""
        try:
            now = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            now = []
        for p in now:
            self._seen.setdefault(p.pid, p)
        return now

    def wait_for(self, path: Path, timeout: float = 300) -> None:
        """Until ``path`` exists; fail (with the run's stderr) if the run ends first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not Path(path).exists():
            self.descendants()
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended (exit {self.proc.returncode}) before {path}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {path} after {timeout:.0f} s:\n{self.stderr()}")
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        """The exit code; fail if the run is still going after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout:.0f} s later:\n{self.stderr()}") from None

    def _read(self, f) -> str:
        f.seek(0)
        return f.read()

    def stdout(self) -> str:
        return self._read(self._out)

    def stderr(self) -> str:
        return self._read(self._err)

    def stop(self) -> None:
        """SIGKILL the run's process group and every descendant seen; reap the run."""
        self.descendants()
        if self.proc.returncode is None:  # not reaped yet: its pid, the group's id, is still this run's
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in self._seen.values():  # workers in sessions of their own, or orphaned by a dead launcher
            try:
                if p.is_running():  # the same process (pid and start time), not a reused pid
                    p.kill()
            except psutil.Error:
                pass
        self.proc.wait(30)

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self._out.close()
            self._err.close()


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Kill these processes and their descendants (for tests that start several at once); reap them."""
    for proc in procs:
        if proc.poll() is not None:  # ended and reaped: its pid may be another process's by now
            continue
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.Error:
            family = []
        for p in family:
            try:
                p.kill()
            except psutil.Error:
                pass
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass


def run_together(cmds, out, envs, timeout: float = 300):
    """Run the commands together (one env each, or one env for all); return the lead's .npz ``out``. On a timeout
    or any failure every process is killed, with its children (torchrun's workers), before the test fails."""
    envs = envs if isinstance(envs, list) else [envs] * len(cmds)
    procs = []
    try:
        for cmd, env in zip(cmds, envs):
            log = tempfile.TemporaryFile("w+")  # not a pipe: a process blocked on a full pipe would hang
            procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True), log))
        deadline = time.monotonic() + timeout
        for proc, _ in procs:
            proc.wait(max(1.0, deadline - time.monotonic()))
        logs = [log.seek(0) or log.read() for _, log in procs]
        assert all(proc.returncode == 0 for proc, _ in procs), "\n".join(logs)
    finally:
        stop_all([proc for proc, _ in procs])
        for _, log in procs:
            log.close()
    return dict(np.load(out))
