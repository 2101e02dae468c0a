"""Run records (``run.json``): what ran, on what, and how it went. Neutral: no framework imports."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
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


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_json(path: str | Path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict:
    from diptych.errors import DiptychError

    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DiptychError(f"cannot read run record {path} ({e})") from None
