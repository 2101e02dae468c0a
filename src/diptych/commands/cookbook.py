"""``diptych cookbook``: list, show (side by side, or one HTML page) and run the recipe pairs.

Recipes run in subprocesses, one framework after the other (two framework processes on a small
machine slow each other down by an order of magnitude); this module never imports torch or JAX.
"""

from __future__ import annotations

import difflib
import html
import json
import os
import subprocess
import sys

import click

from diptych.cookbook import FRAMEWORKS, RECIPES, folder, module, recipe_file
from diptych.errors import DiptychError
from diptych.fsio import atomic_write


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def align(left: list[str], right: list[str]) -> list[tuple[str | None, str | None, bool]]:
    """Pair the lines of two files (difflib), padding with ``None``; the flag says the pair differs."""
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, left, right, autojunk=False).get_opcodes():
        n = max(i2 - i1, j2 - j1)
        for k in range(n):
            a = left[i1 + k] if i1 + k < i2 else None
            b = right[j1 + k] if j1 + k < j2 else None
            rows.append((a, b, tag != "equal"))
    return rows


@click.group("cookbook")
def cookbook():
    """Classic questions answered twice: a short, tested PyTorch program and its JAX twin."""


@cookbook.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_recipes(as_json):
    """The recipes, their questions and whether both files are present."""
    rows = []
    for name, question in RECIPES.items():
        files = {fw: recipe_file(name, fw) for fw in FRAMEWORKS}
        rows.append(
            {
                "name": name,
                "question": question,
                "folder": str(folder(name)),
                **{fw: (len(p.read_text().splitlines()) if p.is_file() else None) for fw, p in files.items()},
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="diptych cookbook (run: diptych cookbook run NAME; read: diptych cookbook show NAME)")
    for col in ("recipe", "question", "torch.py", "jax.py"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            r["question"],
            *(f"{r[fw]} lines" if r[fw] is not None else "[red]missing[/]" for fw in FRAMEWORKS),
        )
    _console().print(table)


@cookbook.command("show")
@click.argument("name", required=False)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False),
    help="Write one self-contained HTML page (all recipes, or NAME) in two columns.",
)
def show(name, html_out):
    """Print a recipe's torch and JAX files side by side, aligned, differing lines shaded."""
    names = [name] if name else list(RECIPES)
    for n in names:
        folder(n)  # unknown name: one line, exit 2
    if html_out:
        atomic_write(html_out, _html_page(names))
        click.echo(f"wrote {html_out} ({len(names)} recipe{'s' * (len(names) > 1)})")
        return
    if not name:
        raise DiptychError(
            "cookbook show needs a recipe NAME (or --html FILE for all of them); see `diptych cookbook list`"
        )
    from rich.syntax import Syntax
    from rich.table import Table

    texts = {}
    for fw in FRAMEWORKS:
        code = recipe_file(name, fw).read_text()
        texts[fw] = Syntax(code, "python", theme="ansi_dark").highlight(code).split("\n")
    table = Table(title=f"cookbook: {name}", show_lines=False, expand=True, pad_edge=False)
    table.add_column(f"{name}/torch.py", ratio=1, overflow="fold")
    table.add_column(f"{name}/jax.py", ratio=1, overflow="fold")
    left = [t.plain for t in texts["torch"]]
    right = [t.plain for t in texts["jax"]]
    it = {"torch": iter(texts["torch"]), "jax": iter(texts["jax"])}
    for a, b, differs in align(left, right):
        cells = [next(it["torch"]) if a is not None else "", next(it["jax"]) if b is not None else ""]
        table.add_row(*cells, style="on grey19" if differs else None)
    _console().print(table)


def _html_page(names: list[str]) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    fmt = HtmlFormatter(nowrap=True, noclasses=True, style="friendly")
    parts = []
    for name in names:
        codes = {fw: recipe_file(name, fw).read_text() for fw in FRAMEWORKS}
        lit = {fw: iter(highlight(c, PythonLexer(), fmt).split("\n")) for fw, c in codes.items()}
        rows = []
        for a, b, differs in align(codes["torch"].splitlines(), codes["jax"].splitlines()):
            cells = [next(lit["torch"]) if a is not None else "", next(lit["jax"]) if b is not None else ""]
            tr = "<tr class=d>" if differs else "<tr>"
            rows.append(f"{tr}<td><pre>{cells[0]}</pre></td><td><pre>{cells[1]}</pre></td></tr>")
        parts.append(
            f'<h2 id="{name}">{html.escape(name)}: {html.escape(RECIPES[name])}</h2>\n'
            f"<table><tr><th>{name}/torch.py</th><th>{name}/jax.py</th></tr>\n" + "\n".join(rows) + "</table>"
        )
    toc = " · ".join(f'<a href="#{n}">{n}</a>' for n in names)
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>diptych cookbook</title><style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;width:100%;table-layout:fixed}"
        "td{vertical-align:top;width:50%;padding:0 .5em}pre{margin:0;font-size:12px;white-space:pre-wrap}"
        "tr.d td{background:#fff6d5}th{text-align:left}</style></head><body>"
        f"<h1>diptych cookbook: PyTorch and JAX, side by side</h1><p>{toc}</p>\n" + "\n".join(parts) + "</body></html>"
    )


def run_recipe(name: str, framework: str, fast: bool, timeout: float | None = None) -> dict:
    """Run one recipe in its own process and return its final JSON line."""
    cmd = [sys.executable, "-m", module(name, framework), *(["--fast"] if fast else [])]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy(), stdin=subprocess.DEVNULL
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise DiptychError(
            f"recipe {name} [{framework}] failed (exit {proc.returncode}): {errors[-1] if errors else 'no output'}"
        )
    return json.loads(lines[-1])


@cookbook.command("run")
@click.argument("name")
@click.option("--framework", type=click.Choice(["torch", "jax", "both"]), default="both", show_default=True)
@click.option("--fast", is_flag=True, help="The recipes' fast mode (fewer steps), as in the tests.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {framework: result}.")
def run(name, framework, fast, as_json):
    """Run a recipe (each framework in turn, never at once) and print the results side by side."""
    folder(name)
    frameworks = FRAMEWORKS if framework == "both" else (framework,)
    console = _console()
    results = {}
    for fw in frameworks:  # one after the other: two framework processes on a few cores slow each other down
        with console.status(f"running {name} [{fw}]{' --fast' if fast else ''} ...", spinner="dots"):
            results[fw] = run_recipe(name, fw, fast)
    if as_json:
        click.echo(json.dumps(results))
        return
    from rich.table import Table

    table = Table(title=f"cookbook run {name}{' --fast' if fast else ''}")
    table.add_column("result")
    for fw in frameworks:
        table.add_column(fw, overflow="fold")
    flat = {fw: _flat(r) for fw, r in results.items()}
    keys = [k for k in dict.fromkeys(k for r in flat.values() for k in r) if k not in ("recipe", "framework")]
    for k in keys:
        table.add_row(k, *(_cell(flat[fw].get(k, "")) for fw in frameworks))
    console.print(table)


def _flat(result: dict) -> dict:
    """One row per top-level key, and per key of a nested dict ("errors.grad")."""
    rows = {}
    for k, v in result.items():
        rows.update({f"{k}.{kk}": vv for kk, vv in v.items()} if isinstance(v, dict) else {k: v})
    return rows


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return ("[" + ", ".join(_cell(x) for x in v) + "]")[:300]
    if isinstance(v, dict):
        return json.dumps(v, default=str)[:300]
    return str(v)
