"""Fetch files with checksums, atomically.

A file is streamed to a temporary name in the destination folder (the atomic writer,
:func:`diptych.fsio.atomic_path`), its MD5 compared with the published one, and only then renamed
into place, so a crash or a bad mirror never leaves a corrupt file where the loader would trust it.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from diptych.errors import DataError
from diptych.fsio import atomic_path, ensure_writable_dir


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class _BadMirror(Exception):
    """A mirror that failed (the network, too many bytes, the wrong MD5): the next one is tried."""


def _download(url: str, tmp: str, timeout: float, max_bytes: int | None) -> None:
    """Stream ``url`` into the file ``tmp``. The network's errors are :class:`_BadMirror`; the disk's stay
    ``OSError`` (for the atomic writer's one line: no other mirror helps)."""
    with open(tmp, "wb") as out:
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as e:
            raise _BadMirror(f"{url}: {getattr(e, 'reason', e)}") from None
        with resp:
            while True:
                try:
                    block = resp.read(1 << 20)
                except (OSError, TimeoutError, ValueError) as e:
                    raise _BadMirror(f"{url}: {getattr(e, 'reason', e)}") from None
                if not block:
                    return
                if max_bytes is not None and out.tell() + len(block) > max_bytes:
                    raise _BadMirror(f"{url}: more than the expected {max_bytes:,} bytes")
                out.write(block)


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
        try:
            with atomic_path(target) as tmp:  # a failed or refused download leaves nothing
                _download(url, tmp, timeout, max_bytes)
                got = md5sum(tmp) if md5 is not None else None
                if md5 is not None and got != md5:
                    raise _BadMirror(f"{url}: MD5 {got} != expected {md5}")
            return target
        except _BadMirror as e:
            problems.append(str(e))
    raise DataError(f"could not download {filename} ({'; '.join(problems)})")
