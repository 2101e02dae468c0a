"""Benchmark reports: ``report.md`` and a self-contained ``report.html`` (images embedded).

Both hold the comparison table, test accuracy against wall time, training loss against step,
throughput bars with their spread, and the machine. ``diptych report DIR...`` rebuilds them from
saved ``bench.json`` / ``run.json`` files.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from diptych.commands.summary import summarize
from diptych.errors import DiptychError
from diptych.records import read_json

COLUMNS = [  # (header, key, format)
    ("train samples/s (median)", "train_sps_median", "{:,.0f}"),
    ("spread (min-max)", None, None),
    ("eval samples/s", "eval_sps_median", "{:,.0f}"),
    ("compile / first step (s)", "compile_seconds_median", "{:.2f}"),
    ("time to target (s)", "time_to_target_seconds", "{:.1f}"),
    ("epochs to target", "time_to_target_epochs", "{}"),
    ("final accuracy", "final_accuracy", "{:.2%}"),
    ("achieved GFLOP/s", "achieved_gflops", "{:.1f}"),
    ("MFU", "mfu", "{:.1%}"),
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
        for name, run in runs.items():
            ax.plot(
                [e["wall_seconds"] for e in run["epochs"]],
                [100 * e["test_accuracy"] for e in run["epochs"]],
                marker="o",
                label=name,
            )
        ax.axhline(100 * result["target_accuracy"], color="gray", ls="--", lw=1, label="target")
        ax.set(
            xlabel="wall time (s, compile included)",
            ylabel="test accuracy (%)",
            title=f"{result['task']}: test accuracy vs wall time",
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
    ax.bar(names, med, yerr=[lo, hi], capsize=6, color=["#4C72B0", "#DD8452", "#55A868", "#C44E52"][: len(names)])
    ax.set(ylabel="training samples/s", title="steady-state training throughput (median, min-max)")
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


def write_report(result: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(result)
    headers, rows = table_rows(result)
    ratios = result.get("ratios", {})

    md = [f"# diptych bench: {result['task']}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    if ratios:
        md += ["", "Ratios (same run):", ""] + [f"- {k.replace('_', ' ')}: {v:.2f}x" for k, v in ratios.items()]
    md += [""]
    for name, data in figs.items():
        (out / f"{name}.png").write_bytes(data)
        md += [f"![{name.replace('_', ' ')}]({name}.png)", ""]
    md += ["## Machine", ""] + [f"- {line}" for line in _machine_lines(result)] + [""]
    (out / "report.md").write_text("\n".join(md))

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
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diptych bench: {esc(result["task"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
img{{max-width:100%}}figure{{margin:1em 0}}</style></head>
<body><h1>diptych bench: {esc(result["task"])}</h1>{table}<ul>{ratio_html}</ul>{imgs}
<h2>Machine</h2><ul>{machine}</ul></body></html>
"""
    (out / "report.html").write_text(page)
    return out / "report.md", out / "report.html"


def rebuild(dirs: list[str | Path], out: str | Path) -> dict:
    """``diptych report``: a report from saved bench.json files, or from run.json files alone."""

    benches, runs = [], {}
    for d in map(Path, dirs):
        if not d.exists():
            raise DiptychError(f"{d} does not exist; pass bench or run folders")
        benches += sorted(d.rglob("bench.json")) if d.is_dir() else [d] if d.name == "bench.json" else []
        for p in sorted(d.rglob("run.json")) if d.is_dir() else [d] if d.name == "run.json" else []:
            run = read_json(p)
            if "task" not in run or "framework" not in run:
                raise DiptychError(f"{p} is not a diptych run record")
            runs[run["framework"]] = run
    if benches:
        result = read_json(benches[0])
        result["runs"].update(runs)
        result = summarize(result["task"], result["bursts"], result["runs"]) | {"machine": result["machine"]}
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
        result = summarize(tasks.pop(), bursts, runs)
    else:
        raise DiptychError(f"no bench.json or run.json under {', '.join(map(str, dirs))}")
    write_report(result, out)
    return result
