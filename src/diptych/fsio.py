"""Safe file writing: every file diptych writes goes through :func:`atomic_write` / :func:`atomic_path`.

A write creates a fresh temporary file beside the destination (``tempfile.mkstemp``: ``O_CREAT |
O_EXCL``, so a planted file or symlink at the temporary name is never opened), gives it the mode any
other tool's new file gets (``0o666 & ~umask``; mkstemp's own is 0600), fills it, fsyncs it, then
``os.replace``s it onto the destination. ``rename(2)`` replaces the directory entry itself: a symlink
planted at the destination is replaced by the new file, never written through. A reader sees the old
file or the new one, never half of one; a crash leaves at most a temporary file named
``.diptych-tmp-<pid>-<token>-<random>.<name>`` (``<token>``: drawn by each process at start), which
:func:`clean_stale_temps` removes once its writer is gone (:func:`is_stale_temp` says when).

Out of space, a read-only disk, or no permission end in one line (:class:`DiptychError`) naming the
file and saying the previous version of it is intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from diptych.errors import DiptychError

TEMP_PREFIX = ".diptych-tmp-"
TOKEN = secrets.token_hex(4)  # this process's: with the pid in every temporary name (see is_stale_temp)
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-(?:([0-9a-f]{8})-)?")  # older names have no token
REUSED_PID_MARGIN = 10.0  # seconds: a process that started this long after a temp was last written is not its writer
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
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)  # the disk's fault, not the data's
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


def _redraw_token() -> None:
    global TOKEN
    TOKEN = secrets.token_hex(4)


os.register_at_fork(after_in_child=_redraw_token)  # a forked child is another writer


def temp_prefix() -> str:
    """The start of this process's temporary names: ``.diptych-tmp-<pid>-<token>-``."""
    return f"{TEMP_PREFIX}{os.getpid()}-{TOKEN}-"


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (other threads may be creating files)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open()`` (and every other tool): ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def make_temp(folder: str | Path, suffix: str) -> str:
    """A new empty file in ``folder`` named ``<temp_prefix()><random><suffix>`` (``O_EXCL``: never a planted
    one), with :func:`file_mode`'s mode; its path."""
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix, dir=folder)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return tmp


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
        tmp = make_temp(path.parent, f".{path.name[-_NAME_KEEP:]}")
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.fchmod(fd, file_mode())  # again: a writer may have made the file anew
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # replaces a symlink at `path` itself, never its target
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:  # numpy's short write has no errno ("24576 requested and 8160 written")
        raise write_error(path, e if e.errno else _wrapped_oserror(e, path.parent) or e, existed) from None
    except DiptychError:
        raise
    except Exception as e:  # a writer library's own error type wrapping an OSError (safetensors, torch)
        if (wrapped := _wrapped_oserror(e, path.parent)) is not None:
            raise write_error(path, wrapped, existed) from None
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _wrapped_oserror(e: Exception, folder: Path) -> OSError | None:
    """Writers report a failed write as their own error: safetensors' Rust and ArrayRecord with the OS
    message in it (the errno is recovered from the text), others (torch's C++ zip writer, numpy's short
    write) with no cause at all: a disk with no space left then says what happened. So the user gets
    the same one line."""
    text = str(e)
    for code in _REASONS:
        if os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    try:
        full = os.statvfs(folder).f_bavail == 0  # the failed writer's partial file is still there
    except OSError:
        full = False
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if full else None


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


def write_figure(fig, path: str | Path, **savefig) -> Path:
    """A matplotlib figure saved to ``path`` through the atomic writer, in the format its suffix names
    (PNG when it has none); an unknown format is one line."""
    import io

    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, **savefig)
    except ValueError:
        raise DiptychError(f"cannot write {path}: no image format {fmt!r}; name a .png, .pdf or .svg file") from None
    return atomic_write(path, buf.getvalue())


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        pass
    return True


def _started_after(pid: int, when: float) -> bool:
    """Did process ``pid`` start after ``when`` (epoch seconds)? ``False`` when that cannot be told."""
    try:
        import psutil

        return psutil.Process(pid).create_time() > when
    except Exception:  # psutil.NoSuchProcess, AccessDenied, or psutil missing
        return False


def is_stale_temp(path: str | Path) -> bool:
    """Is ``path`` a diptych temporary file (or pack folder) whose writer is gone? Told by the pid and the
    token in its name, never by clocks alone:

    * this process's pid: stale unless the token is this process's (a process before it had the same pid);
    * a pid that no longer runs: stale (a ``kill -9``, however recent);
    * a pid that runs: another live writer's, kept, unless that process started more than
      :data:`REUSED_PID_MARGIN` seconds after the file was last written (the pid was reused).

    Names that do not start ``.diptych-tmp-<pid>-`` are never stale."""
    path = Path(path)
    m = _TEMP_NAME.match(path.name)
    if m is None:
        return False
    pid, token = int(m[1]), m[2]
    if pid == os.getpid():
        return token != TOKEN
    if not _alive(pid):
        return True
    try:
        written = path.lstat().st_mtime
    except OSError:
        return False
    return _started_after(pid, written + REUSED_PID_MARGIN)


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the diptych temporary files and folders (a pack's, a download's) in ``folder`` whose writers
    are gone (:func:`is_stale_temp`). Returns what was removed; a live writer's and anything not named by
    diptych stay, and a symlink is never followed."""
    import shutil

    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX) or entry.is_symlink() or not is_stale_temp(entry.path):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
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
        os.unlink(make_temp(probe_dir, ".probe"))
    except OSError as e:
        reason = _REASONS.get(e.errno, e.strerror or type(e).__name__)
        raise DiptychError(
            f"{what} {path} is not writable ({reason}); {_FIXES.get(e.errno, 'choose another folder')}"
        ) from None
    clean_stale_temps(path)
    return path
