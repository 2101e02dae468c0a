"""Pure statistics of a benchmark: medians, spreads, MFU, time to target and the ratios.

Shared by ``diptych bench`` (which measures) and ``diptych report`` (which rebuilds a report from
saved records); it runs nothing and imports neither.
"""

from __future__ import annotations

import statistics

from diptych.backends import FRAMEWORKS
from diptych.flops import train_flops
from diptych.objectives import Objective
from diptych.records import hardware, versions
from diptych.tasks import get_task

BASELINE = "seed-baseline"
SEED_SUFFIX = " (seed recipe)"  # a twin trained with the seed baseline's recipe: "torch (seed recipe)"


def time_to_target(run: dict, objective: Objective) -> tuple[float | None, float | None]:
    """Seconds and epochs to the first evaluation that reached the objective's bar for this run's
    data (a language model's bar depends on its corpus, which the run record describes).

    A run evaluated on a schedule of steps (``evals``, from ``--eval-every``) is timed on its training
    clock (evaluations excluded) at that step, its epochs counted in fractions; otherwise the time is the
    wall time (evaluations included) of the first epoch at the bar."""
    bar = objective.bar(run)
    if run.get("evals"):
        for p in run["evals"]:
            if objective.reached(p, bar):
                return p["train_seconds"], _epochs_at(run, p["step"])
        return None, None
    for e in run.get("epochs", []):
        if objective.reached(e, bar):
            return e["wall_seconds"], e["epoch"]
    return None, None


def _epochs_at(run: dict, step: int) -> float | None:
    n, batch = run.get("dataset", {}).get("train"), run.get("config", {}).get("batch_size")
    return round(step * batch / n, 2) if n and batch else None


def eval_seconds_to_target(run: dict, objective: Objective) -> float | None:
    """Seconds spent evaluating (off the training clock) up to the target, or over the run when never reached."""
    if not run.get("evals"):
        return None
    bar, total = objective.bar(run), 0.0
    for p in run["evals"]:
        total += p["eval_seconds"]
        if objective.reached(p, bar):
            break
    return round(total, 3)


def time_to_target_or_bound(run: dict, objective: Objective) -> tuple[float, bool]:
    """(seconds, reached): a run that never reached the target took *more* than its whole training time."""
    ttt, _ = time_to_target(run, objective)
    if ttt is not None:
        return ttt, True
    return (run["train_clock_seconds"] if run.get("evals") else run["wall_seconds"]), False


def decomposition(runs: dict[str, dict], objective: Objective) -> dict[str, dict]:
    """Per twin: time to target of the seed baseline / the twin = ``framework`` x ``recipe`` = ``total``.

    ``framework``: seed baseline / the twin trained with the seed recipe (same recipe: framework and data
    pipeline alone); ``recipe``: the twin with the seed recipe / the twin with diptych's recipe (same twin:
    the recipe alone). ``at_least``: a run that never reached the target makes its factor a bound."""
    if BASELINE not in runs:
        return {}
    base, base_hit = time_to_target_or_bound(runs[BASELINE], objective)
    out = {}
    for c in runs:
        if c == BASELINE or c.endswith(SEED_SUFFIX) or c + SEED_SUFFIX not in runs:
            continue
        seed, seed_hit = time_to_target_or_bound(runs[c + SEED_SUFFIX], objective)
        own, own_hit = time_to_target_or_bound(runs[c], objective)
        out[c] = {
            "baseline_seconds": base,
            "seed_recipe_seconds": seed,
            "own_recipe_seconds": own,
            "framework": base / seed,
            "recipe": seed / own,
            "total": base / own,
            "reached": {"baseline": base_hit, "seed_recipe": seed_hit, "own_recipe": own_hit},
        }
    return out


def as_written(run: dict, objective: Objective) -> dict:
    """The seed baseline's run as its recipe writes it (all its epochs), and when it first reached the target."""
    ttt, epochs = time_to_target(run, objective)
    return {
        "epochs": len(run["epochs"]),
        "final_accuracy": run["test_accuracy"],
        "train_seconds": run.get("train_clock_seconds"),
        "wall_seconds": run["wall_seconds"],
        "time_to_target_seconds": ttt,
        "time_to_target_epochs": epochs,
    }


def summarize(
    task_name: str, bursts: dict[str, list[dict]], runs: dict[str, dict], overrides: dict | None = None
) -> dict:
    """Medians, spreads, MFU and ratios from raw bursts and full runs (all kept in the result); ``overrides``:
    the model's ``--set`` overrides (the FLOPs are those of the model that ran)."""
    task = get_task(task_name).with_model_overrides(overrides)
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
        if hasattr(task.model, "seq_len"):  # a language model's sample is a window of seq_len characters
            row["train_tps_median"] = row["train_sps_median"] * task.model.seq_len
        if all(b.get("decode_tokens_per_second") for b in bs):
            row["decode_tps_median"] = statistics.median(b["decode_tokens_per_second"] for b in bs)
        row["achieved_gflops"] = row["train_sps_median"] * flops / 1e9
        row["mfu"] = row["achieved_gflops"] / peak if peak else None
        kernels = next((b["profile"]["kernels"] for b in bs if (b.get("profile") or {}).get("kernels")), None)
        if kernels:  # the step's conv/dense kernels alone (bench --profile): a bound on the MFU
            step_ms = 1000 * kernels["batch"] / row["train_sps_median"]
            row["kernel_ms"], row["step_ms"] = kernels["ms"], step_ms
            row["outside_kernels"] = max(0.0, 1 - kernels["ms"] / step_ms)
            ceiling = flops * kernels["batch"] / (kernels["ms"] / 1000) / 1e9
            row["mfu_ceiling"] = ceiling / peak if peak else None
        if c in runs:
            ttt, epochs = time_to_target(runs[c], objective)
            row.update(
                time_to_target_seconds=ttt,
                time_to_target_epochs=epochs,
                eval_seconds=eval_seconds_to_target(runs[c], objective),
                final_accuracy=runs[c]["test_accuracy"],
                final_bpc=runs[c].get("test_bpc"),  # language models: their metric
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
    twins = [c for c in rows if c in FRAMEWORKS]  # the plain twins: diptych's recipe, fp32
    if len(twins) == 2:
        slow, fast = sorted(twins, key=lambda c: rows[c]["train_sps_median"])
        ratios["slower_twin_throughput_vs_faster"] = rows[slow]["train_sps_median"] / rows[fast]["train_sps_median"]
    any_versions = {k: v for bs in bursts.values() for b in bs for k, v in b.get("versions", {}).items()}
    device = next((b["device"] for bs in bursts.values() for b in bs if b.get("device")), "cpu")
    return {
        "task": task.name,
        "target_accuracy": objective.target_accuracy,
        "train_flops_per_sample": flops,
        "model_overrides": dict(overrides or {}),
        "matmul_peak_gflops": peak,
        "contestants": rows,
        "ratios": ratios,
        "bursts": bursts,
        "runs": runs,
        "decomposition": decomposition(runs, objective),
        **({"as_written": as_written(runs[BASELINE], objective)} if BASELINE in runs else {}),
        "machine": {**hardware(device), "versions": versions(any_versions)},
    }
