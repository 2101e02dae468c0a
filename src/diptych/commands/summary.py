"""Pure statistics of a benchmark: medians, spreads, MFU, time to target and the ratios.

Shared by ``diptych bench`` (which measures) and ``diptych report`` (which rebuilds a report from
saved records); it runs nothing and imports neither.
"""

from __future__ import annotations

import statistics

from diptych.flops import train_flops
from diptych.objectives import Objective
from diptych.records import hardware, versions
from diptych.tasks import get_task

BASELINE = "seed-baseline"


def time_to_target(run: dict, objective: Objective) -> tuple[float | None, int | None]:
    """Wall time and epoch of the first evaluation that reached the objective's bar for this run's
    data (a language model's bar depends on its corpus, which the run record describes)."""
    bar = objective.bar(run)
    for e in run.get("epochs", []):
        if objective.reached(e, bar):
            return e["wall_seconds"], e["epoch"]
    return None, None


def time_to_target_or_bound(run: dict, objective: Objective) -> tuple[float, bool]:
    """(seconds, reached): a run that never reached the target took *more* than its wall time."""
    ttt, _ = time_to_target(run, objective)
    return (ttt, True) if ttt is not None else (run["wall_seconds"], False)


def summarize(task_name: str, bursts: dict[str, list[dict]], runs: dict[str, dict]) -> dict:
    """Medians, spreads, MFU and ratios from raw bursts and full runs (all kept in the result)."""
    task = get_task(task_name)
    objective = task.objective
    task = objective.sized(task)  # a language model's FLOPs depend on its vocabulary: the default corpus's
    flops = train_flops(task.model)
    peaks = [b["matmul_gflops"] for bs in bursts.values() for b in bs if b.get("matmul_gflops")]
    peak = (
        max(
            statistics.median([b["matmul_gflops"] for b in bs if b.get("matmul_gflops")])
            for bs in bursts.values()
            if any(b.get("matmul_gflops") for b in bs)
        )
        if peaks
        else None
    )
    rows = {}
    for c, bs in bursts.items():
        sps = [b["train_samples_per_second"] for b in bs]
        row = {
            "train_sps_median": statistics.median(sps),
            "train_sps_min": min(sps),
            "train_sps_max": max(sps),
            "eval_sps_median": statistics.median(b["eval_samples_per_second"] for b in bs),
            "compile_seconds_median": statistics.median(b["compile_seconds"] for b in bs),
            "burst_peak_rss_mb": max(b["peak_rss_mb"] for b in bs),
        }
        row["achieved_gflops"] = row["train_sps_median"] * flops / 1e9
        row["mfu"] = row["achieved_gflops"] / peak if peak else None
        if c in runs:
            ttt, epochs = time_to_target(runs[c], objective)
            row.update(
                time_to_target_seconds=ttt,
                time_to_target_epochs=epochs,
                final_accuracy=runs[c]["test_accuracy"],
                run_peak_rss_mb=runs[c]["peak_rss_mb"],
                run_wall_seconds=runs[c]["wall_seconds"],
            )
        rows[c] = row
    ratios = {}
    if BASELINE in rows:
        base = rows[BASELINE]
        for c, row in rows.items():
            if c == BASELINE:
                continue
            ratios[f"{c}_throughput_vs_baseline"] = row["train_sps_median"] / base["train_sps_median"]
            if row.get("time_to_target_seconds") and BASELINE in runs:
                # If the baseline never reached the target, its wall time is a lower bound, so the
                # speed-up is a lower bound too ("at least").
                base_t, reached = time_to_target_or_bound(runs[BASELINE], objective)
                key = f"{c}_time_to_target_speedup_vs_baseline" + ("" if reached else "_at_least")
                ratios[key] = base_t / row["time_to_target_seconds"]
    twins = [c for c in rows if c != BASELINE]
    if len(twins) == 2:
        slow, fast = sorted(twins, key=lambda c: rows[c]["train_sps_median"])
        ratios["slower_twin_throughput_vs_faster"] = rows[slow]["train_sps_median"] / rows[fast]["train_sps_median"]
    any_versions = {k: v for bs in bursts.values() for b in bs for k, v in b.get("versions", {}).items()}
    device = next((b["device"] for bs in bursts.values() for b in bs if b.get("device")), "cpu")
    return {
        "task": task.name,
        "target_accuracy": objective.target_accuracy,
        "train_flops_per_sample": flops,
        "matmul_peak_gflops": peak,
        "contestants": rows,
        "ratios": ratios,
        "bursts": bursts,
        "runs": runs,
        "machine": {**hardware(device), "versions": versions(any_versions)},
    }
