"""``diptych bench``: an honest side-by-side benchmark of the twins (and the seed baseline).

Method:

1. **Interleaved bursts.** For ``r`` in ``1..R``, each contestant in turn (A B C A B C ...) runs a
   fresh process that builds the model, times the first step (tracing/compilation included),
   then trains for ``--burst`` seconds at steady state, then evaluates the test set, and runs a
   matmul probe. Machine drift (this host class has slowed multi-threaded work 4-15x for minutes
   at a time) then hits every contestant alike; the report gives medians and spread.
2. **Time to target.** Each contestant trains with its own defaults to the end of its budget,
   one after the other (never two at once: two framework processes on two cores slow each other
   by an order of magnitude). Time to target = wall time (compile included) of the first epoch
   whose test accuracy reaches the task's target.
3. **MFU.** Achieved FLOP/s = steady samples/s x analytic training FLOPs per sample
   (:mod:`diptych.flops`); MFU = that / the best float32 matmul rate measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


from diptych.errors import DiptychError
from diptych.flops import train_flops
from diptych.records import hardware, versions, write_json
from diptych.tasks import fit_vocab, get_task

BASELINE = "seed-baseline"
BASELINE_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "seed_baseline.py"


def interleaved(contestants: list[str], repeats: int) -> list[tuple[int, str]]:
    """The run order: every contestant once per round, rounds repeated (A B A B ...)."""
    return [(r, c) for r in range(repeats) for c in contestants]


# ----------------------------------------------------------------------------- one burst (subprocess)


def burst(task_name: str, framework: str, seconds: float, data_dir: str | None, seed: int = 0,
          precision: str = "fp32") -> dict:
    """Runs inside a fresh process: first-step time, steady throughput, eval throughput, matmul peak."""
    from diptych.backends import load_backend
    from diptych.driver import evaluate, load_task_data, train_batches
    from diptych.language import evaluate_lm
    from diptych.records import peak_rss_mb

    task, data, text_info = load_task_data(get_task(task_name), data_dir)
    backend = load_backend(framework)
    batches = train_batches(data, task.budget.batch_size, seed)
    stream = (idx for epoch in range(10**9) for idx in batches.epoch(epoch))
    world = backend.distributed.init()  # the same device set-up as `diptych train`
    trainer = world.parallelize(backend.train.Trainer(task, seed, total_steps=10**6, precision=precision,
                                                      device=world.device))

    idx = next(stream)
    t0 = time.perf_counter()
    trainer.losses_to_numpy([trainer.train_step(data.x_train[idx], data.y_train[idx])])
    first = time.perf_counter() - t0
    steps, t1 = 0, time.perf_counter()
    while steps < 10 or time.perf_counter() - t1 < seconds:
        pending = []
        for _ in range(10):  # sync every 10 steps: JAX dispatches asynchronously
            idx = next(stream)
            pending.append(trainer.train_step(data.x_train[idx], data.y_train[idx]))
            steps += 1
        trainer.losses_to_numpy(pending)
    train_sps = steps * task.budget.batch_size / (time.perf_counter() - t1)
    score = evaluate_lm if text_info is not None else evaluate
    score(trainer, data.x_test[:1000], data.y_test[:1000])  # compile the eval path outside the timing
    t2 = time.perf_counter()
    score(trainer, data.x_test, data.y_test)
    eval_sps = len(data.y_test) / (time.perf_counter() - t2)
    return {"framework": framework, "compile_seconds": first, "train_samples_per_second": train_sps,
            "eval_samples_per_second": eval_sps, "peak_rss_mb": peak_rss_mb(),
            "matmul_gflops": backend.train.matmul_gflops(), "versions": backend.train.versions(),
            "device": backend.train.device_name()}


def _run(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DiptychError(f"benchmark step failed: {' '.join(cmd[1:4])}...: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _burst_cmd(task: str, contestant: str, seconds: float, data_dir: str | None, precision: str) -> list[str]:
    if contestant == BASELINE:
        cmd = [sys.executable, str(BASELINE_SCRIPT), "--burst", str(seconds)]
    else:
        cmd = [sys.executable, "-m", "diptych.bench", "--task", task, "--framework", contestant,
               "--seconds", str(seconds), "--precision", precision]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def _train_cmd(task: str, contestant: str, out: Path, data_dir: str | None, precision: str) -> list[str]:
    if contestant == BASELINE:
        cmd = [sys.executable, str(BASELINE_SCRIPT), "--out", str(out), "--json"]
    else:
        cmd = [sys.executable, "-m", "diptych", "train", task, "--framework", contestant, "--out", str(out),
               "--json", "--no-progress", "--precision", precision]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


# ----------------------------------------------------------------------------- the whole benchmark


def run_bench(task_name: str, frameworks: list[str], out: Path, repeats: int = 3, seconds: float = 3.0,
              baseline: bool = False, data_dir: str | None = None, train: bool = True, log=print,
              precision: str = "fp32") -> dict:
    task = get_task(task_name)
    if baseline and task.name != "mnist-cnn":
        raise DiptychError("--baseline is the seed MNIST CNN recipe: use it with the mnist-cnn task")
    if baseline and not BASELINE_SCRIPT.is_file():
        raise DiptychError(f"{BASELINE_SCRIPT} is missing; run from a clone of the diptych repository")
    contestants = frameworks + ([BASELINE] if baseline else [])
    bursts: dict[str, list[dict]] = {c: [] for c in contestants}
    for r, c in interleaved(contestants, repeats):
        log(f"burst {r + 1}/{repeats}: {c}")
        bursts[c].append(_run(_burst_cmd(task.name, c, seconds, data_dir, precision)))
    runs = {}
    if train:
        for c in contestants:
            log(f"training {c} to the end of its budget")
            runs[c] = _run(_train_cmd(task.name, c, out / "runs" / c, data_dir, precision))
    result = summarize(task.name, bursts, runs)
    result["precision"] = precision
    write_json(out / "bench.json", result)
    from diptych.report import write_report

    write_report(result, out)
    return result


def time_to_target(run: dict, target: float) -> tuple[float | None, int | None]:
    """Wall time and epoch of the first evaluation at the target (for a language model, the run's
    own bits/char bar, which depends on its corpus)."""
    for e in run.get("epochs", []):
        if e["test_bpc"] <= run["target_bpc"] if "target_bpc" in run else e["test_accuracy"] >= target:
            return e["wall_seconds"], e["epoch"]
    return None, None


def time_to_target_or_bound(run: dict, target: float) -> tuple[float, bool]:
    """(seconds, reached): a run that never reached the target took *more* than its wall time."""
    ttt, _ = time_to_target(run, target)
    return (ttt, True) if ttt is not None else (run["wall_seconds"], False)


def summarize(task_name: str, bursts: dict[str, list[dict]], runs: dict[str, dict]) -> dict:
    """Medians, spreads, MFU and ratios from raw bursts and full runs (all kept in the result)."""
    task = get_task(task_name)
    if task.dataset == "text":  # the FLOPs depend on the vocabulary: size it by the default corpus
        from diptych.data.text import load_text

        task = fit_vocab(task, len(load_text().vocab))
    flops = train_flops(task.model)
    peaks = [b["matmul_gflops"] for bs in bursts.values() for b in bs if b.get("matmul_gflops")]
    peak = max(statistics.median([b["matmul_gflops"] for b in bs if b.get("matmul_gflops")])
               for bs in bursts.values() if any(b.get("matmul_gflops") for b in bs)) if peaks else None
    rows = {}
    for c, bs in bursts.items():
        sps = [b["train_samples_per_second"] for b in bs]
        row = {"train_sps_median": statistics.median(sps), "train_sps_min": min(sps), "train_sps_max": max(sps),
               "eval_sps_median": statistics.median(b["eval_samples_per_second"] for b in bs),
               "compile_seconds_median": statistics.median(b["compile_seconds"] for b in bs),
               "burst_peak_rss_mb": max(b["peak_rss_mb"] for b in bs)}
        row["achieved_gflops"] = row["train_sps_median"] * flops / 1e9
        row["mfu"] = row["achieved_gflops"] / peak if peak else None
        if c in runs:
            ttt, epochs = time_to_target(runs[c], task.target.test_accuracy)
            row.update(time_to_target_seconds=ttt, time_to_target_epochs=epochs,
                       final_accuracy=runs[c]["test_accuracy"], run_peak_rss_mb=runs[c]["peak_rss_mb"],
                       run_wall_seconds=runs[c]["wall_seconds"])
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
                base_t, reached = time_to_target_or_bound(runs[BASELINE], task.target.test_accuracy)
                key = f"{c}_time_to_target_speedup_vs_baseline" + ("" if reached else "_at_least")
                ratios[key] = base_t / row["time_to_target_seconds"]
    twins = [c for c in rows if c != BASELINE]
    if len(twins) == 2:
        slow, fast = sorted(twins, key=lambda c: rows[c]["train_sps_median"])
        ratios["slower_twin_throughput_vs_faster"] = rows[slow]["train_sps_median"] / rows[fast]["train_sps_median"]
    any_versions = {k: v for bs in bursts.values() for b in bs for k, v in b.get("versions", {}).items()}
    device = next((b["device"] for bs in bursts.values() for b in bs if b.get("device")), "cpu")
    return {"task": task.name, "target_accuracy": task.target.test_accuracy, "train_flops_per_sample": flops,
            "matmul_peak_gflops": peak, "contestants": rows, "ratios": ratios, "bursts": bursts, "runs": runs,
            "machine": {**hardware(device), "versions": versions(any_versions)}}


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: ``python -m diptych.bench --task T --framework F`` prints one burst as JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True)
    p.add_argument("--framework", required=True)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--data-dir")
    p.add_argument("--precision", default="fp32")
    args = p.parse_args(argv)
    print(json.dumps(burst(args.task, args.framework, args.seconds, args.data_dir, precision=args.precision)))


if __name__ == "__main__":
    main()
