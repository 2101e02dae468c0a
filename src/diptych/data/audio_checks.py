"""The audio feature metadata a weights file or a pack carries, validated before it is trusted.

The front end's settings decide how a recording becomes the model's image, and its per-band statistics how
that image is normalized; both come from a file someone may have edited or truncated, so each value is
checked for its type and a sane range, and the image for the model's shape, before any recording is read.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from diptych.data.audio import MAX_RATE, MIN_RATE, OPTIONAL_SETTINGS, FrontEnd
from diptych.errors import DataError

_STATS = ("mean", "std", "silence", "noise_shape", "noise_bins", "floor")
MAX_FFT_CELLS = 1 << 22  # frames x n_fft of one image: 16 MiB of float32, far above any sane front end


def check_features(
    features,
    source: str,
    input_shape: tuple[int, ...],
    fix: str = "retrain, or convert the weights from a diptych run's weights.safetensors",
) -> dict:
    """Validate the ``features`` metadata a weights file carries before trusting it: the front-end
    settings (known keys only, integer, float or true/false types, sane ranges, an image of the model's
    ``input_shape`` ``(n_mels, frames)``) and per-band statistics (``n_mels`` finite values; ``std``
    and the mel noise terms positive). Returns it with ``frontend`` as a :class:`FrontEnd`. ``fix``:
    what the one-line error tells the user to do (weights by default; a pack is packed again)."""

    def bad(what: str) -> DataError:
        return DataError(f"{source}: its feature metadata {what}; {fix}")

    if not isinstance(features, dict) or not isinstance(features.get("frontend"), dict):
        raise bad("has no front-end settings")
    fe_raw = OPTIONAL_SETTINGS | features["frontend"]
    fields = {f.name: f.type for f in dataclasses.fields(FrontEnd)}
    if set(fe_raw) != set(fields):
        odd = sorted(set(fe_raw) ^ set(fields))
        raise bad(f"has {'unknown' if odd[0] in fe_raw else 'no'} setting {odd[0]!r}")
    kinds = {"int": "an integer", "bool": "true or false", "float": "a finite number"}
    for name, v in fe_raw.items():
        if fields[name] == "bool":
            ok = isinstance(v, bool)
        elif fields[name] == "int":
            ok = isinstance(v, int) and not isinstance(v, bool)
        else:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if not ok:
            raise bad(f"has {name} = {v!r}, not {kinds[fields[name]]}")
    fe = FrontEnd(**fe_raw)
    checks = [
        (MIN_RATE <= fe.sample_rate <= MAX_RATE, "sample_rate"),
        (16 <= fe.n_fft <= 1 << 16, "n_fft"),
        (1 <= fe.hop <= fe.n_fft, "hop"),
        (1 <= fe.n_mels <= 1024, "n_mels"),
        (1 <= fe.frames <= 1 << 16, "frames"),
        (0 <= fe.fmin < fe.fmax <= fe.sample_rate / 2, "fmin/fmax"),
        (0 < fe.floor <= 1, "floor"),
        (0 <= fe.dither <= 1, "dither"),
        (-120 <= fe.level <= 0, "level"),
        (0 <= fe.cepstra <= fe.n_mels, "cepstra"),
        (fe.frames * fe.n_fft <= MAX_FFT_CELLS, "frames x n_fft"),
    ]
    for ok, name in checks:
        if not ok:
            raise bad(f"has an impossible {name} ({fe})")
    if tuple(input_shape) != (fe.n_mels, fe.frames):
        raise bad(f"describes {fe.n_mels}x{fe.frames} log-mel images, the model takes {tuple(input_shape)}")
    out = {"frontend": fe}
    for key in _STATS + (("voice_mean",) if fe.voice else ()):  # voice_mean: where a voice front end moves voices
        out[key] = _finite_bands(features.get(key), fe.n_mels, key, bad)
    for key in ("std", "noise_shape", "noise_bins", "floor"):
        if not (out[key] > 0).all():
            raise bad(f"has a {key} that is not positive")
    return out


def _finite_bands(v, n_mels: int, key: str, bad) -> np.ndarray:
    """``v`` as ``(n_mels,)`` float32, if it is a list of that many finite numbers."""
    if (
        not isinstance(v, list)
        or len(v) != n_mels
        or not all(isinstance(x, int | float) and not isinstance(x, bool) and abs(x) <= 1e30 for x in v)
    ):
        raise bad(f"has no {n_mels} finite values of {key!r}")  # 1e30: finite in float32 too
    return np.asarray(v, np.float32)
