"""chars-gpt beside chars-lstm at equal training time, from two `diptych bench` results.

    diptych bench chars-gpt --out runs/bench-gpt && diptych bench chars-lstm --out runs/bench-lstm
    python benchmarks/lm_race.py runs/bench-gpt runs/bench-lstm --out docs/chars-gpt-vs-lstm.png

Each bench trains both twins to the end of their budgets, evaluating held-out bits/char on a schedule off
the training clock until the target, and after every epoch. This puts those points on one time axis (the
training clock: compile included, evaluation excluded) and prints, per twin, each model's bits/char when
the LSTM's budget ends and when the GPT first beats the LSTM's final figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(run: dict) -> list[tuple[float, float]]:
    """``[(training seconds, held-out bits/char)]``: the scheduled evaluations, then the end of each epoch."""
    points = [(p["train_seconds"], p["test_bpc"]) for p in run.get("evals", [])]
    clock = 0.0
    for epoch in run["epochs"]:
        clock += epoch["train_seconds"]
        points.append((clock, epoch["test_bpc"]))
    return sorted(points)


def at(points: list[tuple[float, float]], seconds: float) -> float:
    """The last figure measured at or before ``seconds`` of training."""
    return max(p for p in points if p[0] <= seconds)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gpt", type=Path, help="chars-gpt bench folder (bench.json)")
    ap.add_argument("lstm", type=Path, help="chars-lstm bench folder (bench.json)")
    ap.add_argument("--out", type=Path, default=Path("chars-gpt-vs-lstm.png"))
    args = ap.parse_args()
    gpt, lstm = (json.loads((d / "bench.json").read_text())["runs"] for d in (args.gpt, args.lstm))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for fw in sorted(set(gpt) & set(lstm)):
        g, s = curve(gpt[fw]), curve(lstm[fw])
        end, final = s[-1]
        beat = next((t for t, bpc in g if bpc <= final), None)
        print(
            f"{fw}: when the LSTM's budget ends ({end:.0f} s) LSTM {final:.3f}, GPT {at(g, end):.3f} bits/char; "
            + (f"the GPT beats {final:.3f} after {beat:.0f} s" if beat else f"the GPT never beats {final:.3f}")
            + f"; GPT final {g[-1][1]:.3f} at {g[-1][0]:.0f} s"
        )
        for name, pts, style in (("chars-gpt", g, "-"), ("chars-lstm", s, "--")):
            ax.plot(*zip(*pts), style, marker="o", ms=2, label=f"{name} [{fw}]")
    ax.set(
        xlabel="training time (s, compile included, evaluation excluded)",
        ylabel="held-out bits/char",
        ylim=(1.6, 3.0),
        title="a character GPT and an LSTM on the same corpus, 2 CPU cores",
    )
    ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
