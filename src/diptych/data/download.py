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
from diptych.fsio import TEMP_PREFIX, ensure_writable_dir, write_error


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class _TooLarge(Exception):
    """A mirror sends more bytes than the file can have."""


def fetch(
    filename: str,
    md5: str | None,
    mirrors: list[str],
    dest_dir: Path,
    timeout: float = 30.0,
    max_bytes: int | None = None,
) -> Path:
    """Download ``filename`` from the first mirror that serves it with the right MD5.

    ``md5=None`` skips the check, for archives whose bytes are not stable (GitHub regenerates its
    tarballs) and whose *content* the caller verifies after extraction instead.
    Raises :class:`DataError` if every mirror fails; a file with the wrong checksum is deleted
    and never reaches ``dest_dir``. ``max_bytes`` stops a mirror that sends more than the file can hold.
    """
    ensure_writable_dir(dest_dir, "the download folder").mkdir(parents=True, exist_ok=True)  # + stale temps gone
    target = dest_dir / filename
    problems = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=f".{filename}.part", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while block := resp.read(1 << 20):
                    if max_bytes is not None and out.tell() + len(block) > max_bytes:
                        raise _TooLarge(f"more than the expected {max_bytes:,} bytes")
                    try:
                        out.write(block)
                    except OSError as e:  # the disk, not the network: no other mirror helps
                        raise write_error(target, e) from None
            got = md5sum(tmp) if md5 is not None else None
            if md5 is not None and got != md5:
                problems.append(f"{url}: MD5 {got} != expected {md5}")
                continue
            os.replace(tmp, target)
            return target
        except _TooLarge as e:
            problems.append(f"{url}: {e}")
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            problems.append(f"{url}: {getattr(e, 'reason', e)}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"could not download {filename} ({'; '.join(problems)})")
