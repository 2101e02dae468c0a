"""Helpers for the disk tests: a small real tmpfs, and the temporary files a writer may leave."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from diptych.fsio import TEMP_PREFIX


def temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX) or p.suffix in (".tmp", ".part")]


@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False):
    """A small tmpfs at ``path`` (needs root and a kernel that allows it; else the test is skipped)."""
    path.mkdir()
    opts = f"size={size}" + (",ro" if readonly else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()}); run as root to test a full disk")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
