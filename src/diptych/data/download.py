"""Fetch files with checksums, atomically.

A file is streamed to a temporary name in the destination folder, its MD5 compared with the
published one, and only then renamed into place (``os.replace`` is atomic on POSIX), so a
crash or a bad mirror never leaves a corrupt file where the loader would trust it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from diptych.errors import DataError


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(filename: str, md5: str | None, mirrors: list[str], dest_dir: Path, timeout: float = 30.0) -> Path:
    """Download ``filename`` from the first mirror that serves it with the right MD5.

    ``md5=None`` skips the check, for archives whose bytes are not stable (GitHub regenerates its
    tarballs) and whose *content* the caller verifies after extraction instead.
    Raises :class:`DataError` if every mirror fails; a file with the wrong checksum is deleted
    and never reaches ``dest_dir``.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / filename
    problems = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while block := resp.read(1 << 20):
                    out.write(block)
            got = md5sum(tmp) if md5 is not None else None
            if md5 is not None and got != md5:
                problems.append(f"{url}: MD5 {got} != expected {md5}")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            problems.append(f"{url}: {getattr(e, 'reason', e)}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"could not download {filename} ({'; '.join(problems)})")
