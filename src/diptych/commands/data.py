"""``diptych data pack|verify``: write a dataset to ArrayRecord shards, and check a pack.

    diptych data pack mnist --out packs/mnist --shards 4
    diptych train mnist-cnn --framework jax --data-dir packs/mnist     # streamed through Grain
    diptych data verify packs/mnist                                    # SHA-256 of every shard

See :mod:`diptych.data.packed` for the format. Importing this module imports neither torch nor JAX.
"""

from __future__ import annotations

from pathlib import Path

import click

from diptych.errors import DiptychError


def pack(
    name: str,
    out,
    data_dir=None,
    shards: int | None = None,
    split: str | None = None,
    image_size: int = 32,
    channels: int = 1,
    val_fraction: float = 0.2,
    progress: bool = True,
) -> dict:
    """Load dataset ``name`` as training would (a built-in one, ``folder``: your images at ``data_dir``)
    and write it to a pack at ``out``; the manifest."""
    from diptych.data.datasets import DATASETS, default_split, load_dataset
    from diptych.data.packing import check_out, pack_dataset

    out = Path(out)
    check_out(out)  # refuse a taken --out before loading anything
    if name == "folder":
        from diptych.data.images import load_image_folder

        if data_dir is None:
            raise DiptychError("folder: pass --data-dir PATH, a folder with one subfolder of images per class")
        data = load_image_folder(data_dir, image_size, channels, val_fraction)
    elif name in DATASETS:
        split = split or default_split(name)
        data = load_dataset(name, data_dir, split=split)
    else:
        raise DiptychError(f"unknown dataset {name!r}; choose one of {', '.join((*DATASETS, 'folder'))}")
    source = str(Path(data_dir).resolve()) if data_dir is not None else None
    return pack_dataset(data, out, shards, split=split, source=source, progress=progress)


@click.group("data")
def data_group():
    """Pack datasets into ArrayRecord shards (streamed by Grain in training), and verify packs."""


@data_group.command("pack")
@click.argument("dataset", metavar="DATASET")
@click.option(
    "--data-dir", type=click.Path(file_okay=False), help="Where the dataset's files are (folder: your images)."
)
@click.option("--out", type=click.Path(file_okay=True), required=True, help="The pack's folder (must not exist yet).")
@click.option("--shards", type=click.IntRange(min=1), help="Training shards (default: about 256 MB each).")
@click.option("--split", help="fsdd: official (default) or speaker:NAME.")
@click.option("--image-size", type=click.IntRange(8, 512), default=32, show_default=True, help="folder: image side.")
@click.option(
    "--channels", type=click.Choice(["1", "3"]), default="1", show_default=True, help="folder: 1 grey, 3 RGB."
)
@click.option(
    "--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def pack_cmd(dataset, data_dir, out, shards, split, image_size, channels, val_fraction, no_progress):
    """Write DATASET (mnist, fashion-mnist, mnist1d, fsdd, or folder: your images) to ArrayRecord shards."""
    manifest = pack(
        dataset,
        out,
        data_dir,
        shards=shards,
        split=split,
        image_size=image_size,
        channels=int(channels),
        val_fraction=val_fraction,
        progress=not no_progress,
    )
    train, test = manifest["splits"]["train"], manifest["splits"]["test"]
    size = sum(s["bytes"] for sp in (train, test) for s in sp["shards"])
    click.echo(
        f"{dataset}: {train['count']:,} train records in {len(train['shards'])} shard(s), {test['count']:,} test, "
        f"{size / 2**20:,.1f} MB -> {Path(out)}"
    )


@data_group.command("verify")
@click.argument("folder", type=click.Path(), metavar="DIR")
def verify_cmd(folder):
    """Check a pack: every shard present, its size, SHA-256, record count and record lengths."""
    from diptych.data.packed import verify

    manifest = verify(folder)
    shards = sum(len(manifest["splits"][s]["shards"]) for s in ("train", "test"))
    click.echo(f"{folder}: ok ({manifest['dataset']}, {shards} shards, SHA-256 and record counts match)")
