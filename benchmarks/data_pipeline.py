"""Proof of scale for packed data: a multi-GB MNIST-derived pack, the Grain loader alone, and mnist-cnn
trained from it with bounded memory, in one process and in two data-parallel workers.

1. **Pack.** MNIST's 60,000 training images, repeated with seeded random shifts of up to 2 pixels
   (filled with the standardized black), until the pack holds about ``--size-gb`` on disk (float32
   records, 3,140 bytes each: 4 GB is about 1.3 million examples); the test split is MNIST's own.
   Written with :class:`diptych.data.packing.PackWriter` a chunk at a time (never whole in memory).
2. **Loader alone.** Samples/s of :class:`~diptych.data.stream.GrainFeed` over the whole pack
   (mnist-cnn's batch, a random global permutation: every batch reads records from all over the 4 GB)
   with 0, 1 and 2 background workers, after the workers have started; and 2 data-parallel readers
   at once (rank 0 and 1 of 2, each reading only its rows of each global batch), summed.
3. **Training.** ``diptych train mnist-cnn --data-dir VIEW --epochs 1`` in each twin, with ``--nproc 1``
   and ``--nproc 2``. A full 4 GB epoch is 1.3 M samples (tens of minutes on a CPU), so the runs train on
   a *view*: a folder whose manifest lists the pack's first shards (symlinks, nothing copied) adding up
   to ``--train-gb`` (``all``: the whole pack). It streams from the same files on disk. Reported: the
   run's steady samples/s and ``peak_rss_mb`` (the training process), the peak RSS of the whole process
   tree (sampled: background reader processes included), and the loader : training ratio.

    python benchmarks/data_pipeline.py --root /tmp/dp --size-gb 4 --train-gb 0.5     # the proof (~30 min)
    python benchmarks/data_pipeline.py --root /tmp/dp-tiny --size-gb 0.05 --shards 4 --train-gb 0.025 \\
        --loader-batches 50                                                          # does it work (~3 min)

Prints a table and writes ``ROOT/data_pipeline.json``. Run it alone on the machine: timings are only
meaningful without other load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from diptych.data import Batches, load_dataset
from diptych.data.packed import MANIFEST, open_pack, record_dtype
from diptych.data.packing import PackWriter
from diptych.data.stream import GrainFeed
from diptych.tasks import get_task

SHIFT = 2  # pixels, each way


def shifted(x: np.ndarray, rng: np.random.Generator, fill: float) -> np.ndarray:
    """``x`` ``(N, 28, 28)`` each moved by a random (dy, dx) in [-SHIFT, SHIFT], uncovered pixels ``fill``."""
    n, h, w = x.shape
    padded = np.full((n, h + 2 * SHIFT, w + 2 * SHIFT), fill, np.float32)
    padded[:, SHIFT:-SHIFT, SHIFT:-SHIFT] = x
    offsets = rng.integers(0, 2 * SHIFT + 1, (n, 2))
    out = np.empty_like(x)
    for dy in range(2 * SHIFT + 1):
        for dx in range(2 * SHIFT + 1):
            sel = np.flatnonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx))
            out[sel] = padded[sel, dy : dy + h, dx : dx + w]
    return out


def make_pack(out: Path, size_gb: float, shards: int | None, data_dir: str | None) -> dict:
    mnist = load_dataset("mnist", data_dir)
    rec = record_dtype({"x": {"dtype": "float32", "shape": [28, 28]}, "y": {"dtype": "int32", "shape": []}})
    n = max(len(mnist.y_train) // 10, int(size_gb * 1e9 / rec.itemsize))
    shards = shards or max(2, math.ceil(n * rec.itemsize / (256 * 2**20)))
    writer = PackWriter(
        out, "mnist", {"train": n, "test": len(mnist.y_test)}, mnist.x_train[0], mnist.y_train[0], shards
    )
    rng, fill, done, t0 = np.random.default_rng(0), float(mnist.x_train.min()), 0, time.perf_counter()
    try:
        while done < n:
            take = min(len(mnist.y_train), n - done)
            writer.add("train", shifted(mnist.x_train[:take], rng, fill), mnist.y_train[:take])
            done += take
            print(f"  packed {done:,}/{n:,} records ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        writer.add("test", mnist.x_test, mnist.y_test)
        info = {"num_classes": 10, "features": None, "classes": None}
        return writer.finish(info, source=f"MNIST train repeated with seeded shifts of up to {SHIFT} px")
    except BaseException:
        writer.abort()
        raise


def pack_bytes(manifest: dict) -> int:
    return sum(s["bytes"] for sp in manifest["splits"].values() for s in sp["shards"])


def make_view(pack: Path, view: Path, train_gb: str) -> dict:
    """A pack folder of the first training shards of ``pack`` (symlinks) adding up to ``train_gb``."""
    manifest = json.loads((pack / MANIFEST).read_text())
    shards, chosen, total = manifest["splits"]["train"]["shards"], [], 0
    limit = math.inf if train_gb == "all" else float(train_gb) * 1e9
    for s in shards:
        if chosen and total + s["bytes"] > limit:
            break
        chosen.append(s)
        total += s["bytes"]
    view.mkdir(parents=True, exist_ok=True)
    for s in chosen + manifest["splits"]["test"]["shards"]:
        link = view / s["file"]
        if not link.exists():
            link.symlink_to((pack / s["file"]).resolve())
    manifest["splits"]["train"] = {"count": sum(s["count"] for s in chosen), "shards": chosen}
    (view / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def loader_rate(pack: Path, batch: int, workers: int, batches: int, rank: int = 0, world: int = 1) -> dict:
    """Samples/s of GrainFeed alone (after its first batch: worker start-up is reported apart)."""
    data = open_pack(pack, "mnist", hash_on_open=False)
    feed = GrainFeed(data.x_train.pack, Batches(len(data.x_train), batch, seed=0).shard(rank, world), workers)
    t0 = time.perf_counter()
    stream = feed.epoch(0)
    next(stream)
    t1 = time.perf_counter()
    samples = 0
    for _, (x, _) in zip(range(batches), stream):
        samples += len(x)
    t2 = time.perf_counter()
    feed.close()
    return {
        "workers": workers,
        "rank": rank,
        "world": world,
        "startup_s": round(t1 - t0, 2),
        "samples": samples,
        "seconds": round(t2 - t1, 3),
        "samples_per_second": round(samples / (t2 - t1), 1),
    }


def loader_two_readers(pack: Path, batch: int, workers: int, batches: int) -> dict:
    """Two data-parallel readers at once (separate processes, rank 0 and 1 of 2), summed."""
    cmd = [sys.executable, __file__, "--loader-only", str(pack), str(batch), str(workers), str(batches)]
    procs = [subprocess.Popen([*cmd, str(r), "2"], stdout=subprocess.PIPE, text=True) for r in range(2)]
    parts = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {
        "workers": workers,
        "world": 2,
        "per_rank": parts,
        "samples_per_second": round(sum(p["samples_per_second"] for p in parts), 1),
    }


def tree_rss_peak(proc: subprocess.Popen, stop: threading.Event, out: dict) -> None:
    """Peak summed RSS (MB) of ``proc`` and all its descendants, sampled every 0.2 s."""
    root, peak = psutil.Process(proc.pid), 0
    while not stop.is_set():
        try:
            total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            peak = max(peak, total)
        except psutil.Error:
            pass
        stop.wait(0.2)
    out["tree_peak_rss_mb"] = round(peak / 2**20, 1)


def train_run(view: Path, framework: str, nproc: int, out: Path, port: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "diptych",
        "train",
        "mnist-cnn",
        "--framework",
        framework,
        "--epochs",
        "1",
        "--data-dir",
        str(view),
        "--out",
        str(out),
        "--no-progress",
        "--json",
        "--nproc",
        str(nproc),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    stop, tree = threading.Event(), {}
    watcher = threading.Thread(target=tree_rss_peak, args=(proc, stop, tree))
    watcher.start()
    code = proc.wait()
    stop.set()
    watcher.join()
    if code:
        raise SystemExit(f"training failed ({code}): {' '.join(cmd)}")
    run = json.loads((out / "run.json").read_text())
    return {
        "framework": framework,
        "nproc": nproc,
        "samples_per_second": run["samples_per_second"],
        "peak_rss_mb": run["peak_rss_mb"],
        **tree,
        "test_accuracy": run["test_accuracy"],
        "train_samples": run["dataset"]["train"],
        "wall_seconds": run["wall_seconds"],
    }


def print_table(result: dict) -> None:
    from rich.table import Table

    from diptych.progress import table_console

    t = Table(title=f"data pipeline: {result['pack_gb']:.2f} GB pack, {result['records']:,} records")
    for h in ("what", "samples/s", "peak RSS MB (trainer / tree)", "loader : train", "note"):
        t.add_column(h, justify="left" if h in ("what", "note") else "right")
    for r in result["loader"]:
        t.add_row(
            f"loader, {r['workers']} workers",
            f"{r['samples_per_second']:,.0f}",
            "",
            "",
            f"start-up {r.get('startup_s', '-')}s",
        )
    for r in result["loader_2_readers"]:
        t.add_row(f"loader, 2 readers x {r['workers']} workers", f"{r['samples_per_second']:,.0f}", "", "", "summed")
    for r in result["train"]:
        ratio = result["loader_best"] / max(r["samples_per_second"], 1e-9)
        t.add_row(
            f"train {r['framework']} --nproc {r['nproc']}",
            f"{r['samples_per_second']:,.0f}",
            f"{r['peak_rss_mb']:,.0f} / {r['tree_peak_rss_mb']:,.0f}",
            f"{ratio:.1f}x",
            f"{r['train_samples']:,} samples, acc {100 * r['test_accuracy']:.2f}%",
        )
    table_console().print(t)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--loader-only":  # one reader of loader_two_readers
        pack, batch, workers, batches, rank, world = sys.argv[2:8]
        print(json.dumps(loader_rate(Path(pack), int(batch), int(workers), int(batches), int(rank), int(world))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/tmp/diptych-data-pipeline", help="Folder for the pack, the runs, the JSON.")
    p.add_argument("--size-gb", type=float, default=4.0, help="Pack size on disk.")
    p.add_argument("--shards", type=int, help="Training shards (default: about 256 MB each).")
    p.add_argument("--train-gb", default="0.5", help="Training view size in GB, or 'all' (see the docstring).")
    p.add_argument("--loader-batches", type=int, default=500, help="Batches timed per loader measurement.")
    p.add_argument("--workers", default="0,1,2", help="Loader background workers to measure.")
    p.add_argument("--frameworks", default="torch,jax")
    p.add_argument("--nproc", default="1,2")
    p.add_argument("--data-dir", help="MNIST IDX files (default: $DIPTYCH_DATA or the cache).")
    p.add_argument("--port", type=int, default=29511)
    args = p.parse_args()
    root = Path(args.root)
    pack = root / "pack"
    if not (pack / MANIFEST).exists():
        print(f"packing about {args.size_gb} GB into {pack} ...", file=sys.stderr)
        make_pack(pack, args.size_gb, args.shards, args.data_dir)
    manifest = json.loads((pack / MANIFEST).read_text())
    batch = get_task("mnist-cnn").budget.batch_size
    workers = [int(w) for w in args.workers.split(",")]
    loader = [loader_rate(pack, batch, w, args.loader_batches) for w in workers]
    two = [loader_two_readers(pack, batch, w, args.loader_batches) for w in workers[:2]]
    view = root / f"view-{args.train_gb}"
    view_manifest = make_view(pack, view, args.train_gb)
    train = [
        train_run(view, fw, int(n), root / f"run-{fw}-{n}", args.port + i)
        for i, (fw, n) in enumerate((fw, n) for n in args.nproc.split(",") for fw in args.frameworks.split(","))
    ]
    result = {
        "pack_gb": pack_bytes(manifest) / 1e9,
        "records": manifest["splits"]["train"]["count"],
        "shards": len(manifest["splits"]["train"]["shards"]),
        "train_view_records": view_manifest["splits"]["train"]["count"],
        "batch_size": batch,
        "cores": len(os.sched_getaffinity(0)),
        "loader": loader,
        "loader_2_readers": two,
        "loader_best": max(r["samples_per_second"] for r in loader),
        "train": train,
    }
    (root / "data_pipeline.json").write_text(json.dumps(result, indent=2))
    print_table(result)
    print(f"-> {root / 'data_pipeline.json'}")


if __name__ == "__main__":
    main()
