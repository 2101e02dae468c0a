"""The Free Spoken Digit Dataset (FSDD): 3,000 8 kHz mono recordings, 6 speakers x 10 digits x 50
takes, named ``{digit}_{speaker}_{take}.wav`` (CC BY-SA 4.0, github.com/Jakobovski/free-spoken-digit-dataset).

Where the recordings are looked for, in order: ``--data-dir`` (the folder itself, or its
``recordings/``, ``fsdd/`` or ``fsdd/recordings/``; a folder given there that holds no recordings is
an error, not skipped), ``$DIPTYCH_DATA/fsdd/recordings/``, the cache ``<cache>/fsdd/recordings/``;
else the archive of the pinned tag is downloaded, its 3,000 recordings extracted and verified by
``CONTENT_SHA256`` (a hash of the sorted file names and bytes: GitHub's tarball bytes are not stable,
the content is) and only then moved into the cache.

Splits: ``official`` (takes 0-4 test, 5-49 train: the dataset's README) and ``speaker:NAME`` (train on
the other speakers, test on NAME), because the official split shares speakers between train and test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from diptych.data.audio import (
    FSDD_FRONTEND,
    FrontEnd,
    feature_stats,
    normalize,
    shift_voices,
    voice_means,
    wav_features,
)
from diptych.data.base import Dataset, check_data_dir
from diptych.data.base import cache_dir as data_cache_dir
from diptych.data.download import fetch
from diptych.errors import DataError, DiptychError
from diptych.fsio import DISK_ERRNOS, atomic_write, clean_stale_temps, current_umask, temp_prefix, write_error
from diptych.progress import console

TAG = "v1.0.10"
ARCHIVE_MIRRORS = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/",)
ARCHIVE = f"{TAG}.tar.gz"
# sha256 over (name, size, bytes) of the sorted recordings of the tag (see content_sha256)
CONTENT_SHA256 = "997e451901d158bdf09dde66b240f3f19310fdbf4d9c056ebd806254df4a672c"
NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
SPLITS_HELP = "official, or speaker:NAME"


def parse_name(name: str) -> tuple[int, str, int] | None:
    """``"7_jackson_32.wav"`` -> ``(7, "jackson", 32)``; ``None`` for other names."""
    m = NAME.match(name)
    return (int(m[1]), m[2], int(m[3])) if m else None


def recordings_in(folder: Path) -> list[Path]:
    return (
        sorted((p for p in folder.glob("*.wav") if parse_name(p.name)), key=lambda p: p.name) if folder.is_dir() else []
    )


def content_sha256(files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(files, key=lambda p: p.name):
        data = p.read_bytes()
        h.update(p.name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


def cache_dir() -> Path:
    return data_cache_dir() / "fsdd"


def locate_recordings(
    data_dir: str | Path | None = None, download: bool = True, mirrors: tuple[str, ...] | None = None
) -> list[Path]:
    """The recordings' paths (sorted by name), found or downloaded as the module docstring says."""
    if data_dir is not None:
        check_data_dir(data_dir)
        d = Path(data_dir)
        for folder in (d, d / "recordings", d / "fsdd", d / "fsdd" / "recordings"):
            if found := recordings_in(folder):
                return found
        raise DataError(
            f"--data-dir {d}: no recordings named {{digit}}_{{speaker}}_{{take}}.wav "
            f"(e.g. 7_jackson_32.wav) in it or its recordings/ subfolder; point it at the FSDD "
            f"recordings folder"
        )
    dirs = [Path(os.environ["DIPTYCH_DATA"]) / "fsdd" / "recordings"] if os.environ.get("DIPTYCH_DATA") else []
    dirs.append(cache_dir() / "recordings")
    for folder in dirs:
        if found := recordings_in(folder):
            return found
    if not download or os.environ.get("DIPTYCH_OFFLINE"):
        why = "DIPTYCH_OFFLINE is set" if os.environ.get("DIPTYCH_OFFLINE") else "this command does not download"
        raise DataError(
            f"fsdd: no recordings in {', '.join(map(str, dirs))} and downloads are off "
            f"({why}); put the .wav files of FSDD {TAG} in "
            f"{cache_dir() / 'recordings'} or pass --data-dir DIR"
        )
    return download_recordings(mirrors or ARCHIVE_MIRRORS)


def download_recordings(mirrors: tuple[str, ...], expected_sha256: str = CONTENT_SHA256) -> list[Path]:
    """Fetch the tag's archive, extract ``*/recordings/*.wav`` (plain files only, by base name, so no
    path in the archive can escape), verify the content hash, then move the folder into the cache."""
    dest = cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        archive = fetch(ARCHIVE, None, list(mirrors), dest)
    except DataError as e:
        raise DataError(
            f"fsdd: {e}; download {mirrors[0]}{ARCHIVE} yourself and put its recordings/*.wav "
            f"in {dest / 'recordings'}, or pass --data-dir DIR"
        ) from None
    clean_stale_temps(dest)  # a killed download's folder
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(), suffix=".recordings", dir=dest))
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isfile() and len(parts) >= 2 and parts[-2] == "recordings" and parse_name(parts[-1]):
                    (tmp / parts[-1]).write_bytes(tar.extractfile(member).read())
        files = recordings_in(tmp)
        got = content_sha256(files)
        if got != expected_sha256:
            raise DataError(
                f"fsdd: the downloaded {ARCHIVE} holds {len(files)} recordings whose content hash "
                f"{got[:16]}... is not {TAG}'s {expected_sha256[:16]}...; nothing was cached; "
                f"try again later or pass --data-dir DIR"
            )
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp made it private; a cache folder is not
        os.replace(tmp, dest / "recordings")
    except OSError as e:
        if e.errno in DISK_ERRNOS:  # the disk, not the archive: not "delete the archive"
            raise write_error(dest / "recordings", e) from None
        raise DataError(f"fsdd: {archive} is not a readable tar.gz archive ({e}); delete it and try again") from None
    except tarfile.TarError as e:
        raise DataError(f"fsdd: {archive} is not a readable tar.gz archive ({e}); delete it and try again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return recordings_in(dest / "recordings")


def split_masks(speakers: np.ndarray, takes: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(train, test)`` masks over the recordings for ``split`` (see the module docstring)."""
    if split == "official":
        test = takes <= 4
    elif split.startswith("speaker:"):
        name = split[len("speaker:") :]
        known = sorted(set(speakers.tolist()))
        if name not in known:
            raise DiptychError(
                f"--split {split}: no speaker {name!r} in the recordings; choose one of {', '.join(known)}"
            )
        test = speakers == name
    else:
        also = "; the leave-one-speaker-out protocol is `diptych loso TASK`" if split == "loso" else ""
        raise DiptychError(f"unknown --split {split!r} for fsdd; use {SPLITS_HELP}{also}")
    if test.all() or not test.any():
        raise DiptychError(
            f"--split {split} leaves the {'training' if test.all() else 'test'} set empty; "
            f"these recordings need takes 0-4 and 5-49 (official) or several speakers"
        )
    return ~test, test


def _features(files: list[Path], fe: FrontEnd) -> np.ndarray:
    """``(N, M, T)`` log-mel images, cached under a key of the front-end settings and the files' content
    (names and bytes: a recording replaced by another of the same size gets new features)."""
    listing = "\n".join(f"{p.name}:{hashlib.sha1(p.read_bytes()).hexdigest()}" for p in files)
    key = hashlib.sha1(f"{fe.key()}\n{listing}".encode()).hexdigest()[:16]
    path = cache_dir() / f"features-{key}.npy"
    if path.exists():
        try:
            feats = np.load(path)
            if feats.shape == (len(files), fe.n_mels, fe.frames):
                return feats
        except (OSError, ValueError):
            pass  # a corrupt cache entry is recomputed below
    from rich.progress import track

    feats = np.stack(
        [
            wav_features(p, fe)
            for p in track(files, description="fsdd: log-mel features", console=console, transient=True)
        ]
    )
    clean_stale_temps(path.parent)
    atomic_write(path, lambda tmp: np.save(tmp, feats))
    return feats


def load_fsdd(
    data_dir: str | Path | None = None, split: str | None = None, download: bool = True, fe: FrontEnd = FSDD_FRONTEND
):
    """FSDD as a :class:`~diptych.data.datasets.Dataset` of normalized log-mel images ``(N, M, T)``.

    Normalization statistics come from the training split only; they travel in
    ``Dataset.features`` (with the front-end settings) for augmentation and for transcription.
    """
    split = split or "official"
    files = locate_recordings(data_dir, download)
    parsed = [parse_name(p.name) for p in files]
    digits = np.array([d for d, _, _ in parsed], np.int32)
    speakers = np.array([s for _, s, _ in parsed])
    takes = np.array([t for _, _, t in parsed])
    train, test = split_masks(speakers, takes, split)
    logmel = _features(files, fe)  # (N, M, T)
    voice = {}
    if fe.voice:  # each speaker's speech moved to the training speakers' average (audio.shift_voices)
        target = np.mean(list(voice_means(logmel[train], speakers[train]).values()), axis=0)  # (M,)
        logmel = logmel.copy()
        # Each side by its own recordings: a test voice is estimated from its test recordings, labels unused.
        for side in (train, test):
            logmel[side] = shift_voices(logmel[side], speakers[side], target)
        voice = {"voice_mean": target.tolist()}
    stats = feature_stats(logmel[train], fe)
    features = {"frontend": dataclasses.asdict(fe), "split": split, **{k: v.tolist() for k, v in stats.items()}}
    features |= voice
    return Dataset(
        "fsdd",
        normalize(logmel[train], stats),
        digits[train],
        normalize(logmel[test], stats),
        digits[test],
        features=features,
    )
