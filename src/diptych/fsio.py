"""Safe file writing: every file diptych writes goes through :func:`atomic_write` / :func:`atomic_path`.

A write creates a fresh temporary file beside the destination (``tempfile.mkstemp``: ``O_CREAT |
O_EXCL``, so a planted file or symlink at the temporary name is never opened), fills it, fsyncs it,
then ``os.replace``s it onto the destination. ``rename(2)`` replaces the directory entry itself: a
symlink planted at the destination is replaced by the new file, never written through. A reader
sees the old file or the new one, never half of one; a crash leaves at most a temporary file named
``.diptych-tmp-<pid>-<random>.<name>``, which :func:`clean_stale_temps` removes once its writer is gone.

Out of space, a read-only disk, or no permission end in one line (:class:`DiptychError`) naming the
file and saying the previous version of it is intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from diptych.errors import DiptychError

TEMP_PREFIX = ".diptych-tmp-"
_NAME_KEEP = 80  # characters of the destination's name kept in the temp name (NAME_MAX is 255)

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long",
}
_FIXES = {
    errno.ENOSPC: "free some space and run again",
    errno.EDQUOT: "free some space and run again",
    errno.EROFS: "choose a writable folder",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
}


def write_error(path: str | Path, e: OSError, existed: bool | None = None) -> DiptychError:
    """One line for a failed write of ``path``: what went wrong, that nothing was lost, what to do."""
    path = Path(path)
    existed = path.exists() if existed is None else existed
    reason = _REASONS.get(e.errno, e.strerror or type(e).__name__)
    kept = f"the previous {path.name} is intact" if existed else "nothing was written"
    fix = _FIXES.get(e.errno, "choose another path")
    return DiptychError(f"cannot write {path}: {reason}; {kept}; {fix}")


def _process_start(pid: int) -> float | None:
    """Start time (epoch seconds) of a running process, or ``None`` if there is no such process."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # psutil.NoSuchProcess, AccessDenied, or psutil missing
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass
        return 0.0  # alive, start unknown: treat as the file's owner


_STARTED = _process_start(os.getpid()) or time.time()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a fresh temporary path beside ``path`` for a writer that wants a file name (``save_file``,
    ``torch.save``, ``np.save``); on success the file is fsynced and renamed onto ``path``. The temporary
    name ends in ``path``'s own name, so writers that add a suffix (``np.save``) add none."""
    path = Path(path)
    existed = path.exists() or path.is_symlink()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=f".{path.name[-_NAME_KEEP:]}", dir=path.parent
        )
        os.close(fd)
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # replaces a symlink at `path` itself, never its target
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        raise write_error(path, e, existed) from None
    except Exception as e:  # a writer library's own error type wrapping an OSError (safetensors)
        if (wrapped := _wrapped_oserror(e)) is not None:
            raise write_error(path, wrapped, existed) from None
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _wrapped_oserror(e: Exception) -> OSError | None:
    """Writers that are not Python (safetensors' Rust) report ENOSPC as their own error with the
    OS message in it; recover the errno from the text so the user gets the same one line."""
    text = str(e)
    for code in _REASONS:
        if os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    return None


def atomic_write(path: str | Path, data: bytes | str | Callable[[str], None]) -> Path:
    """Write ``data`` (bytes, UTF-8 text, or a function that writes a given file name) to ``path``
    atomically; see the module docstring. Returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove diptych temporary files in ``folder`` left by writers that are gone: older than this
    process, and whose writing process no longer runs (or is a newer process with a reused id).
    Returns what was removed; files of live writers and anything not named by diptych stay."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if mtime >= _STARTED:
            continue  # written since this process started: possibly a live writer's
        pid_text = entry.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        owner = _process_start(int(pid_text)) if pid_text.isdigit() else None
        if owner is not None and owner <= mtime and int(pid_text) != os.getpid():
            continue  # its writer still runs
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def ensure_writable_dir(path: str | Path, what: str = "--out") -> Path:
    """Make sure ``path`` is a folder diptych can write to, or can be created as one, before any work is
    done (creating nothing: a probe file is made and removed in it or in its nearest existing parent);
    remove stale temporary files there. One line naming ``what`` if not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DiptychError(f"{what} {path} is a file, not a folder; pass a folder")
    probe_dir = path
    while not probe_dir.exists() and not probe_dir.is_symlink():  # the nearest part that exists
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():  # a file (or dangling link) above: mkdir would only say "Not a directory"
        raise DiptychError(f"{what} {path}: {probe_dir} is not a folder; pass a path under a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=".probe", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = _REASONS.get(e.errno, e.strerror or type(e).__name__)
        raise DiptychError(
            f"{what} {path} is not writable ({reason}); {_FIXES.get(e.errno, 'choose another folder')}"
        ) from None
    clean_stale_temps(path)
    return path
