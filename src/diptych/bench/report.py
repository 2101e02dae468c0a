"""Benchmark reports: ``report.md`` and a self-contained ``report.html`` (images embedded).

Both hold the comparison table, test accuracy against wall time, training loss against step,
throughput bars with their spread, and the machine. ``diptych report DIR...`` rebuilds them from
saved ``bench.json`` / ``run.json`` files.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from diptych.bench.summary import BASELINE, SEED_SUFFIX, summarize
from diptych.errors import DiptychError
from diptych.fsio import atomic_write
from diptych.records import read_json
from diptych.stephooks import format_top_ops
from diptych.tasks import get_task

METRIC_AXES = {"test_accuracy": ("test accuracy (%)", 100), "test_bpc": ("held-out bits/char", 1)}  # label, scale
COLUMNS = [  # (header, key, format)
    ("train samples/s (median)", "train_sps_median", "{:,.0f}"),
    ("spread (min-max)", None, None),
    ("train tokens/s", "train_tps_median", "{:,.0f}"),
    ("decode tokens/s (cached, batch 1)", "decode_tps_median", "{:,.0f}"),
    ("eval samples/s", "eval_sps_median", "{:,.0f}"),
    ("compile / first step (s)", "compile_seconds_median", "{:.2f}"),
    ("time to target (s)", "time_to_target_seconds", "{:.1f}"),
    ("epochs to target", "time_to_target_epochs", "{}"),
    ("evaluation until then (s, not counted)", "eval_seconds", "{:.1f}"),
    ("final accuracy", "final_accuracy", "{:.2%}"),
    ("final held-out bits/char", "final_bpc", "{:.3f}"),
    ("achieved GFLOP/s", "achieved_gflops", "{:.1f}"),
    ("MFU", "mfu", "{:.1%}"),
    ("MFU ceiling (its convs/matmuls alone)", "mfu_ceiling", "{:.1%}"),
    ("peak RSS (MB)", "run_peak_rss_mb", "{:,.0f}"),
]


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["", *(h for h, _, _ in COLUMNS)]
    rows = []
    for name, row in result["contestants"].items():
        cells = [name]
        for _, key, fmt in COLUMNS:
            if key is None:
                cells.append(f"{row['train_sps_min']:,.0f}-{row['train_sps_max']:,.0f}")
            else:
                v = row.get(key)
                cells.append("-" if v is None else fmt.format(v))
        rows.append(cells)
    return headers, rows


def _figures(result: dict) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(fig) -> bytes:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        return buf.getvalue()

    figs = {}
    runs = result.get("runs", {})
    if runs:
        fig, ax = plt.subplots(figsize=(7, 4))
        clocked = any(run.get("evals") for run in runs.values())
        objective = get_task(result["task"]).objective  # its metric: accuracy, or a language model's bits/char
        key = objective.metric
        label, scale = METRIC_AXES.get(key, (key, 1))
        for name, run in runs.items():
            points = run.get("evals") or run["epochs"]  # evaluations on a schedule: on the training clock
            ax.plot(
                [p["train_seconds"] if run.get("evals") else p["wall_seconds"] for p in points],
                [scale * p[key] for p in points],
                marker="o",
                ms=3,
                label=name,
            )
        target = objective.bar(next(iter(runs.values())))  # a language model's bar comes from its corpus
        ax.axhline(scale * target, color="gray", ls="--", lw=1, label="target")
        ax.set(
            xlabel="training time (s, compile included, evaluation excluded)"
            if clocked
            else "wall time (s, compile included)",
            ylabel=label,
            title=f"{result['task']}: {label.split(' (')[0]} vs time",
        )
        ax.grid(alpha=0.3), ax.legend()
        figs["accuracy_vs_time"] = png(fig)

        fig, ax = plt.subplots(figsize=(7, 4))
        for name, run in runs.items():
            curve = run.get("loss_curve") or []
            if curve:
                ax.plot([c[0] for c in curve], [c[1] for c in curve], label=name, lw=1)
        ax.set(xlabel="training step", ylabel="training loss", yscale="log", title="training loss vs step")
        ax.grid(alpha=0.3), ax.legend()
        figs["loss_vs_step"] = png(fig)

    names = list(result["contestants"])
    med = [result["contestants"][n]["train_sps_median"] for n in names]
    lo = [m - result["contestants"][n]["train_sps_min"] for n, m in zip(names, med)]
    hi = [result["contestants"][n]["train_sps_max"] - m for n, m in zip(names, med)]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    palette = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3"]
    ax.bar(names, med, yerr=[lo, hi], capsize=6, color=[palette[i % len(palette)] for i in range(len(names))])
    ax.set(ylabel="training samples/s", title="steady-state training throughput (median, min-max)")
    ax.tick_params(axis="x", labelrotation=20 if len(names) > 3 else 0)
    ax.grid(alpha=0.3, axis="y")
    figs["throughput"] = png(fig)
    return figs


def _machine_lines(result: dict) -> list[str]:
    m = result.get("machine", {})
    lines = [
        f"CPU: {m.get('cpu')} ({m.get('cores')} cores, {m.get('memory_gb')} GB)",
        f"device: {m.get('device')}",
        f"platform: {m.get('platform')}",
    ]
    lines += [f"{k}: {v}" for k, v in m.get("versions", {}).items()]
    if result.get("matmul_peak_gflops"):
        lines.append(f"measured float32 matmul peak: {result['matmul_peak_gflops']:.0f} GFLOP/s")
    lines.append(f"analytic training FLOPs per sample: {result['train_flops_per_sample']:,}")
    return lines


def _recipe(run: dict) -> str:
    c = run.get("config", {})
    sched = {"onecycle": "one-cycle ", "cosine": "cosine ", "constant": ""}.get(c.get("schedule"), "")
    lr = f" {c['lr']:g}" if c.get("lr") else ""
    extra = " constant" if c.get("schedule") == "constant" else ""
    opt = c.get("optimizer", "?").capitalize()
    epochs = c.get("epochs")
    return f"batch {c.get('batch_size')}, {sched}{opt}{lr}{extra}, {epochs} epoch{'s' if epochs != 1 else ''}"


def title(result: dict) -> str:
    """The task, and the model's ``--set`` overrides where it ran with any: ``mnist1d-mlp (--set hidden=32)``."""
    sets = " ".join(
        f"--set {k}={','.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in (result.get("model_overrides") or {}).items()
    )
    return f"{result['task']} ({sets})" if sets else result["task"]


def headline(result: dict) -> list[str]:
    """The report's first lines: per twin, the total speed-up over the seed baseline as framework x recipe,
    in words; then the baseline as written. Empty without a decomposition (no --baseline)."""
    dec, runs, target = result.get("decomposition") or {}, result.get("runs", {}), result["target_accuracy"]
    lines = []
    for twin, d in dec.items():
        seed_run, own_run = runs.get(twin + SEED_SUFFIX, {}), runs.get(twin, {})
        lines.append(
            f"**{twin} reached {target:.0%} test accuracy {d['total']:.2f}x sooner than the seed baseline "
            f"(plain PyTorch, the recipe as written) = {d['framework']:.2f}x from the framework and data pipeline "
            f"x {d['recipe']:.2f}x from the training recipe.**"
            if all(d["reached"].values())
            else f"**{twin} against the seed baseline, time to {target:.0%}: total {d['total']:.2f}x = framework "
            f"{d['framework']:.2f}x x recipe {d['recipe']:.2f}x, but not every run reached {target:.0%}: "
            f"these are bounds, not measurements.**"
        )
        lines.append(
            f"  - framework factor {d['framework']:.2f}x = {d['baseline_seconds']:.1f} s (seed baseline) / "
            f"{d['seed_recipe_seconds']:.1f} s ({twin} trained with the seed's own recipe: {_recipe(seed_run)}, "
            f"Normalize((0.5,), (0.5,))). Same recipe, so this is {twin} against plain PyTorch code."
        )
        lines.append(
            f"  - recipe factor {d['recipe']:.2f}x = {d['seed_recipe_seconds']:.1f} s / "
            f"{d['own_recipe_seconds']:.1f} s "
            f"({twin} with diptych's recipe: {_recipe(own_run)}). Same {twin} code, so this is the recipe alone: "
            f"any framework would gain it."
        )
        if not all(d["reached"].values()):
            missed = ", ".join(k.replace("_", " ") for k, v in d["reached"].items() if not v)
            lines.append(f"  - not reached by: {missed}; its whole training time stands in, so these are bounds.")
        sps = result.get("contestants", {})
        if BASELINE in sps and twin + SEED_SUFFIX in sps:
            ratio = sps[twin + SEED_SUFFIX]["train_sps_median"] / sps[BASELINE]["train_sps_median"]
            lines.append(f"  - steady training throughput, same recipe: {twin} {ratio:.2f}x the seed baseline's.")
    aw = result.get("as_written")
    if aw:
        reached = (
            f"it first reached {target:.0%} after {aw['time_to_target_seconds']:.1f} s of training "
            f"({aw['time_to_target_epochs']} epochs; the stop-at-{target:.0%} row of the table)"
            if aw["time_to_target_seconds"] is not None
            else f"it never reached {target:.0%}"
        )
        train = f"{aw['train_seconds']:.1f} s of training, " if aw.get("train_seconds") is not None else ""
        lines.append(
            f"The seed recipe as written ({aw['epochs']} epoch{'s' if aw['epochs'] != 1 else ''}): "
            f"{aw['final_accuracy']:.2%} final test accuracy, "
            f"{train}{aw['wall_seconds']:.1f} s wall with its evaluations; {reached}."
        )
    if lines:
        lines.append(
            "Times are the training clock up to the first evaluation at the target: compile and data loading "
            "included, evaluation excluded (its seconds are a column of their own)."
        )
    return lines


def profile_tables(result: dict) -> list[tuple[str, dict[str, dict]]]:
    """``[(group, {contestant: profile})]``: contestants traced with --profile, grouped so that the twins
    with the same recipe and precision sit side by side."""
    groups: dict[str, dict[str, dict]] = {}
    for name, bursts in result.get("bursts", {}).items():
        prof = next((b["profile"] for b in bursts if b.get("profile")), None)
        if prof:
            fw = next((b.get("framework") for b in bursts if b.get("framework")), name)
            suffix = name[len(fw) :].strip()
            group = "seed recipe, fp32" if suffix == SEED_SUFFIX.strip() else f"diptych recipe, {suffix or 'fp32'}"
            groups.setdefault(group, {})[name] = prof
    return list(groups.items())


KERNELS_NOTE = (
    "Forward + backward of each layer timed alone, at the step's batch, with the twin's own kernels (the "
    "first layer computes no input gradient). A step can take no less than their sum, so the step's FLOPs "
    "over it bound the MFU; what the step spends beyond it is pooling, activations, the loss, the optimizer, "
    "the batch's transfer and, in JAX, the gradient all-reduce. Both MFU columns divide by the float32 "
    "matmul peak, the bf16 rows too, so a bf16 ceiling can pass 100%."
)


def kernel_table(result: dict, profs: dict[str, dict]) -> tuple[list[str], list[list[str]], list[str]] | None:
    """The profiled contestants' conv and dense layers timed alone (``bench --profile``): headers, a row
    per layer (ms and GFLOP/s for each contestant) and their sum, and a sentence per contestant on the
    MFU bound they set. ``None`` when no contestant has them (recurrent models, older results)."""
    ks = {n: p["kernels"] for n, p in profs.items() if p.get("kernels")}
    if not ks:
        return None
    headers = ["layer", *(f"{n} {h}" for n in ks for h in ("ms", "GFLOP/s"))]
    first = next(iter(ks.values()))["layers"]
    rows = [
        [
            layer["name"],
            *(c for k in ks.values() for c in (f"{k['layers'][i]['ms']:.3f}", f"{k['layers'][i]['gflops']:.0f}")),
        ]
        for i, layer in enumerate(first)
    ]
    rows.append(["all", *(c for k in ks.values() for c in (f"{k['ms']:.3f}", ""))])
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    notes = []
    for n in ks:
        row = result["contestants"].get(n, {})
        if "kernel_ms" in row:
            notes.append(
                f"{n}: these kernels alone take {row['kernel_ms']:.2f} ms of its {row['step_ms']:.2f} ms step "
                f"(steady rate), so {row['outside_kernels']:.0%} of the step is spent outside them. "
                f"MFU reached: {pct(row.get('mfu'))}; with nothing but these kernels: {pct(row.get('mfu_ceiling'))}."
            )
    return headers, rows, notes


def _profile_md(result: dict) -> list[str]:
    md = []
    for group, profs in profile_tables(result):
        md += ["", f"### Top operations of one training step: {group}", ""]
        md += [
            "- "
            + "; ".join(
                f"{n}: {p['step_ms']:.2f} ms per step over {p['steps']} steps, trace in `{p['dir']}`"
                for n, p in profs.items()
            ),
            "",
        ]
        md += format_top_ops({n: p["top_ops"] for n, p in profs.items()})
        kt = kernel_table(result, profs)
        if kt:
            headers, rows, notes = kt
            md += ["", f"#### The convs and dense layers alone: {group}", "", KERNELS_NOTE, ""]
            md += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            md += ["| " + " | ".join(r) + " |" for r in rows]
            md += [""] + [f"- {n}" for n in notes]
    if md:
        md = [
            "",
            "## Where the time goes",
            "",
            "Self time of each operation (its time minus the operations it calls), per step, and its share of the "
            "step's wall time. torch: aten ops with their first input's shape (forward and backward of each layer, "
            "Adam's foreach ops); JAX: XLA's compiled operations (fusions, convolutions, dots) and host-to-device "
            "copies. Open the traces in Perfetto (ui.perfetto.dev) or TensorBoard.",
        ] + md
    return md


def _kernel_html(result: dict, group: str, profs: dict[str, dict]) -> str:
    kt = kernel_table(result, profs)
    if not kt:
        return ""
    esc = html.escape
    headers, rows, notes = kt
    return (
        f"<h4>The convs and dense layers alone: {esc(group)}</h4><p>{esc(KERNELS_NOTE)}</p><table><thead><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in headers)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
        + "</tbody></table><ul>"
        + "".join(f"<li>{esc(n)}</li>" for n in notes)
        + "</ul>"
    )


def write_report(result: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(result)
    headers, rows = table_rows(result)
    ratios = result.get("ratios", {})

    head = headline(result)
    md = [f"# diptych bench: {title(result)}", ""] + [line for h in head for line in (h, "")]
    md += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    if ratios:
        md += ["", "Ratios (same run):", ""] + [f"- {k.replace('_', ' ')}: {v:.2f}x" for k, v in ratios.items()]
    md += _profile_md(result) + [""]
    for name, data in figs.items():
        atomic_write(out / f"{name}.png", data)
        md += [f"![{name.replace('_', ' ')}]({name}.png)", ""]
    md += ["## Machine", ""] + [f"- {line}" for line in _machine_lines(result)] + [""]
    atomic_write(out / "report.md", "\n".join(md))

    esc = html.escape
    table = "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead><tbody>"
    table += "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows) + "</tbody></table>"
    ratio_html = "".join(f"<li>{esc(k.replace('_', ' '))}: <b>{v:.2f}x</b></li>" for k, v in ratios.items())
    imgs = "".join(
        f'<figure><img alt="{esc(n)}" src="data:image/png;base64,{base64.b64encode(d).decode()}">'
        f"<figcaption>{esc(n.replace('_', ' '))}</figcaption></figure>"
        for n, d in figs.items()
    )
    machine = "".join(f"<li>{esc(line)}</li>" for line in _machine_lines(result))
    head_html = "".join(f"<p>{esc(h.replace('**', '').strip(' -'))}</p>" for h in head)
    prof_html = "".join(
        f"<h3>Top operations of one training step: {esc(group)}</h3>"
        + "<table><thead><tr><th>#</th>"
        + "".join(f"<th>{esc(n)} op</th><th>ms/step</th><th>share</th>" for n in profs)
        + "</tr></thead><tbody>"
        + "".join(
            f"<tr><td>{i + 1}</td>"
            + "".join(
                f"<td>{esc(p['top_ops'][i]['name'])}</td><td>{p['top_ops'][i]['ms_per_step']:.3f}</td>"
                f"<td>{p['top_ops'][i]['share']:.1%}</td>"
                if i < len(p["top_ops"])
                else "<td></td><td></td><td></td>"
                for p in profs.values()
            )
            + "</tr>"
            for i in range(min(12, max(len(p["top_ops"]) for p in profs.values())))
        )
        + "</tbody></table>"
        + _kernel_html(result, group, profs)
        for group, profs in profile_tables(result)
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diptych bench: {esc(title(result))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
img{{max-width:100%}}figure{{margin:1em 0}}</style></head>
<body><h1>diptych bench: {esc(title(result))}</h1>{head_html}{table}<ul>{ratio_html}</ul>{prof_html}{imgs}
<h2>Machine</h2><ul>{machine}</ul></body></html>
"""
    atomic_write(out / "report.html", page)
    return out / "report.md", out / "report.html"


def rebuild(dirs: list[str | Path], out: str | Path) -> dict:
    """``diptych report``: a report from saved bench.json files, or from run.json files alone."""

    benches, runs = [], {}
    for d in map(Path, dirs):
        if not d.exists():
            raise DiptychError(f"{d} does not exist; pass bench or run folders")
        benches += sorted(d.rglob("bench.json")) if d.is_dir() else [d] if d.name == "bench.json" else []
        for p in sorted(d.rglob("run.json")) if d.is_dir() else [d] if d.name == "run.json" else []:
            if any(p.is_relative_to(b.parent) for b in benches):
                continue  # a bench's own run: its bench.json holds it under its contestant's name
            run = read_json(p)
            if "task" not in run or "framework" not in run:
                raise DiptychError(f"{p} is not a diptych run record")
            runs[run["framework"]] = run
    if benches:
        result = read_json(benches[0])
        result["runs"].update(runs)
        overrides = result.get("model_overrides")
        result = summarize(result["task"], result["bursts"], result["runs"], overrides) | {"machine": result["machine"]}
    elif runs:
        tasks = {r["task"] for r in runs.values()}
        if len(tasks) > 1:
            raise DiptychError(f"these runs are of different tasks ({', '.join(sorted(tasks))}); report one task")
        bursts = {
            fw: [
                {
                    "framework": fw,
                    "compile_seconds": r["compile_seconds"],
                    "train_samples_per_second": r["samples_per_second"],
                    "eval_samples_per_second": float("nan"),
                    "peak_rss_mb": r["peak_rss_mb"],
                }
            ]
            for fw, r in runs.items()
        }
        models = [(r.get("config") or {}).get("model_overrides") or {} for r in runs.values()]
        overrides = {json.dumps(m, sort_keys=True) for m in models}
        if len(overrides) > 1:
            raise DiptychError("these runs trained different models (--set); report runs of one model")
        result = summarize(tasks.pop(), bursts, runs, json.loads(overrides.pop()))
    else:
        raise DiptychError(f"no bench.json or run.json under {', '.join(map(str, dirs))}")
    write_report(result, out)
    return result
