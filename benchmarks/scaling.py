"""1 vs N data-parallel workers: steady training samples/s of `diptych train --nproc N`, interleaved.

Each round runs every (framework, N) once, one after the other, so that load from other programs
hits all configurations alike; the table shows the median over rounds and the ratio N : 1.

    python benchmarks/scaling.py mnist1d-cnn --epochs 10 --rounds 3 [--nproc 2] [--frameworks torch,jax]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_once(task: str, framework: str, nproc: int, epochs: int, out: Path, port: int) -> float:
    cmd = [
        sys.executable,
        "-m",
        "diptych",
        "train",
        task,
        "--framework",
        framework,
        "--epochs",
        str(epochs),
        "--nproc",
        str(nproc),
        "--port",
        str(port),
        "--out",
        str(out),
        "--no-progress",
        "--json",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "run.json").read_text())["samples_per_second"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--frameworks", default="torch,jax")
    args = p.parse_args()
    rates: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for fw in args.frameworks.split(","):
                for n in (1, args.nproc):
                    rate = run_once(args.task, fw, n, args.epochs, Path(tmp) / f"{fw}-{n}-{r}", 29700 + r)
                    rates.setdefault((fw, n), []).append(rate)
                    print(f"round {r + 1} {fw} nproc={n}: {rate:,.0f} samples/s", flush=True)
    print(f"\n{args.task}, {args.epochs} epochs, median of {args.rounds} interleaved rounds")
    print(f"| framework | 1 worker | {args.nproc} workers | ratio |\n| --- | ---: | ---: | ---: |")
    for fw in args.frameworks.split(","):
        one, many = statistics.median(rates[(fw, 1)]), statistics.median(rates[(fw, args.nproc)])
        print(f"| {fw} | {one:,.0f} | {many:,.0f} | {many / one:.2f}x |")


if __name__ == "__main__":
    main()
