"""Run records (``run.json``): what ran, on what, and how it went. Neutral: no framework imports."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> dict:
    try:
        import psutil

        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover - psutil is a core dependency
        mem_gb = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "device": device,
    }


def versions(backend_versions: dict[str, str]) -> dict[str, str]:
    try:
        version = importlib.metadata.version("diptych")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "unknown"
    return {"diptych": version, "python": sys.version.split()[0], "numpy": np.__version__, **backend_versions}


# Environment variables that change how either twin computes: OpenMP/MKL/oneDNN threads and wait policy,
# XLA's flags, JAX's device and platform choices. Recorded as set (absent: the library's default).
RUNTIME_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "DNNL_", "ONEDNN_", "XLA_", "JAX_", "TORCH_")


def runtime(backend_runtime: dict) -> dict:
    """How the run computed, for ``run.json``: the usable cores, the thread and XLA environment variables
    in effect, and the twin's own settings (``backends/<fw>/train.runtime``: threads, devices, accelerator
    library versions)."""
    from diptych.launch import usable_cores

    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(RUNTIME_ENV_PREFIXES)}
    env |= {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES",) if k in os.environ}
    return {"usable_cores": usable_cores(), "env": env, **backend_runtime}


def source_revision() -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout diptych runs from, or None (an installed
    package, no git, or any failure: a run record never fails for want of it).

    The checkout must track this very file: a package installed into a virtual environment that
    happens to sit inside some repository is not that repository's code.
    """
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "records.py") is None:
        return None
    commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    if not commit or status is None:
        return None
    return {"commit": commit, "dirty": bool(status)}


def source_record() -> dict:
    """``{"git": source_revision()}`` for ``run.json`` when run from a checkout, else ``{}`` (the key is absent)."""
    revision = source_revision()
    return {"git": revision} if revision else {}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_json(path: str | Path, record: dict) -> None:
    from diptych.fsio import atomic_write

    atomic_write(path, json.dumps(record, indent=2) + "\n")  # a fresh temp name: a planted symlink is not followed


def read_json(path: str | Path) -> dict:
    """A JSON record; ``run.json`` and ``bench.json`` are checked against what reports read from them,
    so a damaged or foreign record is one line, not a KeyError deep in a report."""
    from diptych.errors import DiptychError

    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise DiptychError(f"cannot read run record {path} ({' '.join(str(e).split())})") from None
    problem = {"run.json": _run_problem, "bench.json": _bench_problem}.get(Path(path).name, lambda r: None)(record)
    if problem:
        raise DiptychError(
            f"{path} is not a complete diptych record ({problem}); rebuild it with `diptych train` "
            f"or `diptych bench`, or leave it out"
        )
    return record


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _missing(record: dict, numbers: tuple[str, ...], texts: tuple[str, ...] = ()) -> str | None:
    for k in texts:
        if not isinstance(record.get(k), str):
            return f"{k} is {record.get(k, 'missing')!r}"
    for k in numbers:
        if not _num(record.get(k)):
            return f"{k} is {record.get(k, 'missing')!r}, not a number"
    return None


def _run_problem(run) -> str | None:
    if not isinstance(run, dict):
        return "not a JSON object"
    if problem := _missing(
        run,
        ("test_accuracy", "wall_seconds", "compile_seconds", "samples_per_second", "peak_rss_mb"),
        ("task", "framework"),
    ):
        return problem
    epochs = run.get("epochs")
    if (
        not isinstance(epochs, list)
        or not epochs
        or any(not isinstance(e, dict) or _missing(e, ("test_accuracy", "wall_seconds")) for e in epochs)
    ):
        return "its epochs are not a list of {test_accuracy, wall_seconds} records"
    if "evals" in run:  # --eval-every points (time to target on the training clock)
        evals = run["evals"]
        if not isinstance(evals, list) or any(
            not isinstance(p, dict) or _missing(p, ("step", "train_seconds", "eval_seconds", "test_accuracy"))
            for p in evals
        ):
            return "its evals are not a list of {step, train_seconds, eval_seconds, test_accuracy} records"
        if not _num(run.get("train_clock_seconds")):
            return "it has evals but no train_clock_seconds"
    return None


def _profile_problem(prof) -> bool:
    """A burst's --profile record: steps, step_ms and a list of {name, ms_per_step, share}."""
    return (
        not isinstance(prof, dict)
        or _missing(prof, ("steps", "step_ms"), ("dir",)) is not None
        or not isinstance(prof.get("top_ops"), list)
        or any(not isinstance(o, dict) or _missing(o, ("ms_per_step", "share"), ("name",)) for o in prof["top_ops"])
        or (prof.get("kernels") is not None and _kernels_problem(prof["kernels"]))
    )


def _kernels_problem(kernels) -> bool:
    """The layers timed alone: a batch, their summed ms (> 0) and a list of {name, ms, gflops}."""
    return (
        not isinstance(kernels, dict)
        or _missing(kernels, ("batch", "ms")) is not None
        or not kernels["ms"] > 0
        or not isinstance(kernels.get("layers"), list)
        or any(not isinstance(o, dict) or _missing(o, ("ms", "gflops"), ("name",)) for o in kernels["layers"])
    )


def _bench_problem(bench) -> str | None:
    if not isinstance(bench, dict):
        return "not a JSON object"
    if problem := _missing(bench, (), ("task",)):
        return problem
    bursts, runs = bench.get("bursts"), bench.get("runs")
    if (
        not isinstance(bursts, dict)
        or not bursts
        or not isinstance(runs, dict)
        or not isinstance(bench.get("machine"), dict)
    ):
        return "no bursts, runs or machine"
    for name, bs in bursts.items():
        if (
            not isinstance(bs, list)
            or not bs
            or any(
                not isinstance(b, dict)
                or _missing(
                    b, ("train_samples_per_second", "eval_samples_per_second", "compile_seconds", "peak_rss_mb")
                )
                or ("profile" in b and _profile_problem(b["profile"]))
                for b in bs
            )
        ):
            return f"the bursts of {name!r} are incomplete"
    for name, run in runs.items():
        if problem := _run_problem(run):
            return f"run {name!r}: {problem}"
    return None
