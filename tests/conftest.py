"""Shared fixtures. Tests never touch the network: downloads are disabled (DIPTYCH_OFFLINE=1)
except where a test points the downloader at a local file:// mirror of its own."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _jax_cache_dir() -> Path:
    """A persistent XLA compilation cache for the suite, outside the clone (a fresh clone of the same code on
    the same machine compiles nothing again), one per jaxlib version and machine: compiled code is specific
    to both. The same step compiled in several tests or processes is compiled once."""
    import hashlib
    import platform
    from importlib.metadata import version

    try:
        cpu = "".join(line for line in open("/proc/cpuinfo") if line.startswith(("model name", "flags")))
    except OSError:
        cpu = platform.processor()
    machine = hashlib.sha256(f"{platform.machine()}{cpu}".encode()).hexdigest()[:12]
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "diptych" / "jax-tests" / f"jaxlib-{version('jaxlib')}-{machine}"


# Before JAX starts (here and in every subprocess, which inherits the environment); a user's setting wins.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_jax_cache_dir()))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import diptych.backends.jax  # noqa: E402, F401  first, as in `diptych train`: one XLA:CPU device per core


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    # MNIST-1D is generated once per session into a private cache (unless CI gave one).
    os.environ.setdefault("DIPTYCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    os.environ["DIPTYCH_OFFLINE"] = "1"
    yield


@contextlib.contextmanager
def precision_restored():
    """Restore the global matmul precision on exit (JAX's default matmul precision, torch's TF32 switches):
    a test that changes it must not leave it changed for the tests after it."""
    import jax
    import torch

    saved = (
        jax.config.jax_default_matmul_precision,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    try:
        yield
    finally:
        jax.config.update("jax_default_matmul_precision", saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1:]


@contextlib.contextmanager
def pinned_float32():
    """float32 pinned for parity (JAX matmuls at float32, TF32 off) inside the block; restored after it."""
    import jax
    import torch

    with precision_restored():
        jax.config.update("jax_default_matmul_precision", "float32")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        yield


@pytest.fixture
def float32():
    """One test with float32 pinned (see :func:`pinned_float32`); the previous precision comes back after."""
    with pinned_float32():
        yield


@pytest.fixture
def restores_precision():
    """One test that may change the global precision; the previous one comes back after."""
    with precision_restored():
        yield


def real_data_dir(name: str) -> Path:
    """The folder of a real dataset from $DIPTYCH_DATA, or skip with how to provide it."""
    root = os.environ.get("DIPTYCH_DATA")
    if not root or not (Path(root) / name).is_dir():
        pytest.skip(
            f"real {name} data not available: set DIPTYCH_DATA to a folder with {name}/ in it "
            f"(CI uses ../shared/data), or run `diptych train` once online to cache it"
        )
    return Path(root) / name


def run_cli(*args: str, timeout: float = 600, env: dict | None = None, isolated: bool = False):
    """Run the real CLI as a user would: by default in this process (the same ``main()``, its one-line errors
    and exit codes, without an interpreter start-up and a second import of the frameworks), and in a fresh
    process when a test is about the process itself (``isolated``: signals, threads, launches of workers)
    or runs it in another environment (``env``; a ``None`` value removes a variable). ``timeout`` bounds a
    fresh process; in this process, the test's own timeout (pytest-timeout) does."""
    if not isolated and env is None:
        return cli_in_process(*args)
    full_env = {**os.environ, **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}  # None removes a variable
    return subprocess.run(
        [sys.executable, "-m", "diptych", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def run_cli_isolated(*args: str, **kw) -> subprocess.CompletedProcess:
    """:func:`run_cli` in a fresh process, for tests of processes: kills, launches, bit-identity across runs."""
    return run_cli(*args, isolated=True, **kw)


def cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI's entry point in this process, its stdout and stderr captured: the same one-line error
    handling and exit code as the real command, with no interpreter start-up per call."""
    from diptych.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["diptych", *args], code, out.getvalue(), err.getvalue())


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The promise for bad input: exit code 2 and one line on stderr, naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("diptych: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_batch(task, n: int, rng: np.random.Generator):
    """Random inputs and labels shaped for ``task``'s model: images, MNIST-1D rows, or text ids."""
    if task.dataset == "text":
        spec = task.model
        return (
            rng.integers(0, spec.vocab, (n, spec.seq_len)).astype(np.int32),
            rng.integers(0, spec.vocab, (n, spec.seq_len)).astype(np.int32),
        )
    x = rng.standard_normal((n, *task.model.input_shape())).astype(np.float32)
    return x, rng.integers(0, getattr(task.model, "num_classes", 10), n).astype(np.int32)


@pytest.fixture(scope="session")
def mnist1d():
    from diptych.data import load_dataset

    return load_dataset("mnist1d")


@pytest.fixture(scope="session")
def mnist():
    from diptych.data import load_dataset

    return load_dataset("mnist", real_data_dir("mnist"))
