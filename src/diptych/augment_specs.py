"""Augmentation specs: frozen, framework-neutral descriptions of how a task augments its training batches
(audio: :class:`AugmentSpec`; images: :class:`ImageAugmentSpec`). The parameters are drawn in numpy by
:mod:`diptych.data.augment` and applied on device by each twin's ``augment.py``.

    >>> ImageAugmentSpec.parse("shift:2,rotate:10,erase").describe()
    'shift:2,rotate:10,erase:0.5'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from diptych.errors import DiptychError


@dataclass(frozen=True)
class AugmentSpec:
    """Audio augmentation of log-mel batches during training (see :mod:`diptych.data.augment`): a frequency
    warp by a factor in ``1 +- warp`` (a different vocal tract length), a channel
    (a smooth gain curve over the bands, each of its terms up to ``eq`` nats), a time
    shift of up to ``max_shift`` frames, additive noise at an SNR drawn from ``snr_db`` (with probability
    ``noise_prob``), and SpecAugment masks: ``freq_masks`` bands of up to ``freq_width`` mel bins and
    ``time_masks`` bands of up to ``time_width`` frames; then mixup (Zhang et al. 2018) with weights drawn from
    ``Beta(mixup, mixup)`` (0: off)."""

    warp: float = 0.0
    max_shift: int = 8
    snr_db: tuple[float, float] = (5.0, 30.0)
    noise_prob: float = 0.5
    freq_masks: int = 2
    freq_width: int = 4
    time_masks: int = 2
    time_width: int = 6
    eq: float = 0.0
    mixup: float = 0.0

    modality: ClassVar[str] = "audio"

    def augmenter(self, dataset, seed: int):
        """The run's augmenter (:class:`diptych.data.augment.Augmenter`): draws each batch's parameters
        from the train split's statistics; ``None`` for a dataset without them."""
        from diptych.data.augment import Augmenter

        return Augmenter(self, dataset.features, seed) if dataset.features else None


IMAGE_OPS = {"shift": 2, "rotate": 10.0, "scale": 0.1, "erase": 0.5, "flip": 0.5, "mixup": 0.2, "cutmix": 1.0}
DIGIT_DATASETS = ("mnist",)  # a mirrored 2, 3, 4, 5, 7 or 9 is no digit: flipping would teach wrong labels


@dataclass(frozen=True)
class ImageAugmentSpec:
    """Image augmentation during training (see :mod:`diptych.data.augment`): a translation by up to
    ``shift`` whole pixels, a rotation in ``+-rotate`` degrees and a scale in ``1 +- scale`` (one affine
    warp), random erasing of a rectangle with probability ``erase``, a horizontal flip with probability
    ``flip``, and mixup (``mixup``: the Beta(a, a) parameter) or cutmix (``cutmix``: likewise).

    Written on the command line as ``--augment OPS``, a comma list of ``op[:strength]`` (strengths
    default to :data:`IMAGE_OPS`):

        >>> ImageAugmentSpec.parse("shift:2,rotate:10,erase").describe()
        'shift:2,rotate:10,erase:0.5'
    """

    shift: int = 0
    rotate: float = 0.0
    scale: float = 0.0
    erase: float = 0.0
    flip: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0

    modality: ClassVar[str] = "image"

    def active(self) -> bool:
        return any(getattr(self, k) for k in IMAGE_OPS)

    def augmenter(self, dataset, seed: int):
        """The run's augmenter (:class:`diptych.data.augment.ImageAugmenter`), ``None`` when no op is on.
        Warps and erasing fill with the background: the smallest value (a blank pixel, standardized)."""
        from diptych.data.augment import ImageAugmenter

        return ImageAugmenter(self, float(dataset.x_train.min()), seed) if self.active() else None

    def describe(self) -> str:
        """The OPS string that gives this spec back, or ``none``."""
        parts = [f"{k}:{getattr(self, k):g}" for k in IMAGE_OPS if getattr(self, k)]
        return ",".join(parts) or "none"

    @classmethod
    def parse(cls, ops: str) -> "ImageAugmentSpec":
        fields: dict = {}
        for part in filter(None, (p.strip() for p in ops.split(","))):
            name, _, value = part.partition(":")
            if name not in IMAGE_OPS:
                raise DiptychError(
                    f"--augment: unknown operation {name!r}; use none, default or a comma list "
                    f"of {', '.join(IMAGE_OPS)} with optional strengths, e.g. shift:2,rotate:10"
                )
            try:
                strength = float(value) if value else float(IMAGE_OPS[name])
            except ValueError:
                raise DiptychError(
                    f"--augment: {part!r} needs a number after the colon, e.g. {name}:{IMAGE_OPS[name]}"
                ) from None
            limits = {"shift": 64, "rotate": 180, "scale": 0.9, "erase": 1, "flip": 1, "mixup": 100, "cutmix": 100}
            if not 0 <= strength <= limits[name] or (name == "shift" and strength != int(strength)):
                raise DiptychError(
                    f"--augment: {part!r} is out of range; {name} takes "
                    f"{'whole pixels ' if name == 'shift' else ''}from 0 to {limits[name]}"
                )
            fields[name] = int(strength) if name == "shift" else strength
        spec = cls(**fields)
        if spec.mixup and spec.cutmix:
            raise DiptychError("--augment: choose mixup or cutmix, not both")
        return spec
