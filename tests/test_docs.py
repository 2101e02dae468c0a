"""The docs say only what is true of the command line: every ``diptych ...`` line in README.md,
BENCHMARKS.md, docs/*.md and the cookbook's guide parses with the real click CLI and names a real
command, task, dataset, recipe and options; every relative link points to a file; the README stays short.

Which lines are commands:

- in ```bash, ```sh, ```shell, ```console and plain ``` blocks: each line (``\\`` continuations
  joined, ``# comments`` dropped, split at ``|``, ``;``, ``&&``) whose command word is ``diptych``,
  also after ``VAR=value`` prefixes or ``env``, as a path (``.venv/bin/diptych``) or as ``-m diptych``
  (``torchrun ... -m diptych train ...``); in ```console blocks only the lines that start with ``$``.
  A block's command must be complete: it would run as written.
- inline `code` spans that start with ``diptych ``. A span may name part of a command: ``...``
  stands for what it leaves out, and a missing required argument or option is no error there
  (```diptych data pack``` names a command). Whatever a span does name must exist.

Parsing runs each command's own argument processing (types, choices, ranges, callbacks) through
click's ``Context``/``parse_args``, never the command's body, so it takes milliseconds and touches nothing.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import click
import pytest

from diptych.cli import cli
from diptych.cookbook import RECIPES
from diptych.data.datasets import DATASETS
from diptych.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "src/diptych/cookbook/README.md"]
README_MAX_LINES = 150

# The placeholders the docs may use where a value goes: a token in capitals is one of these, or it fails.
# Each stands for a real value of its kind, which is what the command is parsed with.
PLACEHOLDERS = {
    "TASK": "mnist-cnn",  # any task of the registry
    "DATASET": "mnist",  # `diptych data pack DATASET`
    "N": "2",  # a count: --nproc N, --shards N, --checkpoint-every N, --data-workers N, --eval-every N
    "K": "2",  # --keep K
    "PATH": "PATH",  # a folder or file: any string is a valid path to click
    "DIR": "DIR",
    "FILE": "FILE",
}
# A model factory FILE.py:NAME (`diptych port ...`) is real when FILE.py exists in the repository and
# defines NAME, or when a ```python block of the docs starts with "# FILE.py" and defines NAME.
FACTORY = re.compile(r"^(?P<file>[\w./-]+\.py):(?P<name>\w+)$")
COMMAND_WORD = re.compile(r"(^|[\s/])diptych(\s|$)")
CAPITALS = re.compile(r"^[A-Z][A-Z0-9_]*$")
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
OPERATORS = {"|", "||", "&", "&&", ";", "(", ")", ">", ">>", "<", "2>", "2>&1"}


class DocError(Exception):
    """A command line in the docs that is not true of the CLI."""


# ----------------------------------------------------------------------------- extracting


def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(info string, first line number, lines) of each ``` block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^\s*```\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        start, body = i + 2, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        blocks.append((m.group(1).lower(), start, body))
        i += 1
    return blocks


def prose(text: str) -> str:
    """The text with every fenced block blanked out (line numbers kept)."""
    out, inside = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            inside = not inside
            out.append("")
        else:
            out.append("" if inside else line)
    return "\n".join(out)


def _segments(line: str) -> list[list[str]]:
    """Shell words of one logical line, comments dropped, split into simple commands at operators."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError as e:  # an unclosed quote
        raise DocError(f"not a shell line ({e}): {line}") from None
    segments, current = [], []
    for w in words:
        if w in OPERATORS or (w and set(w) <= set("|&;()<>")):
            segments.append(current)
            current = []
        else:
            current.append(w)
    return [*segments, current]


def _diptych_args(words: list[str]) -> list[str] | None:
    """The arguments after the ``diptych`` command word of one simple command, or None if it has none."""
    for i, w in enumerate(words):
        if w == "diptych" or w.endswith("/diptych"):
            return words[i + 1 :]
        if w == "-m" and i + 1 < len(words) and words[i + 1] == "diptych":
            return words[i + 2 :]
    return None


def commands(text: str) -> list[tuple[int, list[str], bool]]:
    """(line number, arguments after ``diptych``, inline?) of every diptych command line in a markdown text."""
    found = []
    for info, start, body in fenced_blocks(text):
        if info not in SHELL_BLOCKS:
            continue
        logical, first = "", None
        for n, raw in enumerate(body, start):
            if info == "console" and not logical:  # a prompt line, or output
                if not raw.startswith("$ "):
                    continue
                raw = raw[2:]
            first = n if not logical else first
            if raw.rstrip().endswith("\\"):
                logical += raw.rstrip()[:-1] + " "
                continue
            logical += raw
            if not COMMAND_WORD.search(logical):  # prose in a plain block, a file tree, another program
                logical = ""
                continue
            for words in _segments(logical):
                args = _diptych_args(words)
                if args is not None:
                    found.append((first, args, False))
            logical = ""
    for n, line in enumerate(prose(text).splitlines(), 1):
        for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", line):
            if span.startswith("diptych "):
                try:
                    found.append((n, shlex.split(span, comments=True)[1:], True))
                except ValueError as e:  # an unclosed quote
                    raise DocError(f"line {n}: not a shell line ({e}): {span}") from None
    return found


# ----------------------------------------------------------------------------- checking


def _python_files_in_docs() -> dict[str, set[str]]:
    """{"mymodel.py": top-level names} for each ```python block of the docs whose first line is "# NAME.py"."""
    files = {}
    for doc in DOCS:
        for info, _, body in fenced_blocks(doc.read_text()):
            m = body and re.match(r"^#\s*([\w.-]+\.py)\s*$", body[0])
            if info == "python" and m:
                files[m.group(1)] = _top_level_names("\n".join(body))
    return files


def _top_level_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


DOC_FILES = _python_files_in_docs()


def _check_factory(word: str) -> None:
    m = FACTORY.match(word)
    if not m:
        return
    file, name = m.group("file"), m.group("name")
    if (ROOT / file).is_file():
        defined = _top_level_names((ROOT / file).read_text())
    elif file in DOC_FILES:
        defined = DOC_FILES[file]
    else:
        raise DocError(f"{word}: {file} is neither in the repository nor written out in a ```python block")
    if name not in defined:
        raise DocError(f"{word}: {file} defines no {name}")


def _check_values(path: list[str], params: dict) -> None:
    """The values click takes as plain strings, checked against the registries."""
    task = params.get("task")
    if task is not None and task not in TASKS:
        raise DocError(f"unknown task {task!r}")
    dataset = params.get("dataset")
    if dataset is not None and dataset not in (*DATASETS, "folder"):
        raise DocError(f"unknown dataset {dataset!r}")
    if path[-2:-1] == ["cookbook"] and params.get("name") is not None and params["name"] not in RECIPES:
        raise DocError(f"unknown cookbook recipe {params['name']!r}")


def check(args: list[str], inline: bool = False) -> None:
    """Raise DocError unless ``diptych ARGS`` parses with the real CLI and names only real things."""
    if "..." in args and not inline:
        raise DocError("'...' leaves part of a command out: only inline spans may do that")
    args = [a for a in args if a != "..."]
    for word in args:
        _check_factory(word)
    for i, word in enumerate(args):
        if CAPITALS.match(word):
            if word not in PLACEHOLDERS:
                raise DocError(f"{word}: not a placeholder of this test's PLACEHOLDERS; use a real value")
            args[i] = PLACEHOLDERS[word]
    cmd, name, parent, path = cli, "diptych", None, ["diptych"]
    try:
        while isinstance(cmd, click.Group):
            options = []
            while args and args[0].startswith("-"):
                options.append(args.pop(0))
            if options:  # the group's own options (--version, --help): exit by design
                cmd.make_context(name, options, parent=parent)
            if not args:
                if inline:
                    return
                raise DocError(f"{' '.join(path)}: which command?")
            parent = click.Context(cmd, info_name=name, parent=parent)
            name, cmd, args = cmd.resolve_command(parent, args)
            path.append(name)
        ctx = cmd.context_class(cmd, info_name=name, parent=parent)
        try:
            with ctx.scope(cleanup=False):
                cmd.parse_args(ctx, list(args))
        except click.MissingParameter:
            if not inline:
                raise
        _check_values(path, ctx.params)
    except click.exceptions.Exit:  # --help, --version
        return
    except DocError:
        raise
    except click.ClickException as e:  # usage errors: no such command or option, a bad value, a missing one
        raise DocError(e.format_message()) from None
    except Exception as e:  # a callback's own refusal (DiptychError: an unknown framework or precision)
        raise DocError(f"{type(e).__name__}: {e}") from None


def failures(text: str) -> list[str]:
    bad = []
    for n, args, inline in commands(text):
        try:
            check(list(args), inline)
        except DocError as e:
            bad.append(f"line {n}: diptych {' '.join(args)}\n    {e}")
    return bad


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_line_parses_and_names_real_things(doc):
    bad = failures(doc.read_text())
    assert not bad, f"{doc.relative_to(ROOT)}:\n" + "\n".join(bad)


def test_the_docs_have_command_lines():
    """If the extraction stopped finding commands, the test above would pass on nothing."""
    counts = {str(doc.relative_to(ROOT)): len(commands(doc.read_text())) for doc in DOCS}
    assert counts["README.md"] >= 10, counts
    assert sum(counts.values()) >= 80, counts
    blocks = sum(not inline for doc in DOCS for _, _, inline in commands(doc.read_text()))
    assert blocks >= 50, blocks


GOOD = """
Intro with an inline `diptych train mnist-cnn --framework jax` and a partial `diptych train ... --resume`.

```bash
JAX_NUM_CPU_DEVICES=1 diptych train mnist1d-cnn --framework jax   # a comment with --no-such-option
diptych port check examples/port/resnet.py:torch_model examples/port/resnet.py:nnx_model \\
    --input 4,3,8,8 --train --steps 10
torchrun --nproc-per-node 2 -m diptych train mnist-cnn --framework torch --out /shared/runs/mnist-cnn
make demo
```

```console
$ diptych cookbook show autodiff
not a command: diptych frobnicate
```
"""


def test_the_extraction_finds_what_a_reader_would_run():
    found = commands(GOOD)
    assert [(args[:2], inline) for _, args, inline in found] == [
        (["train", "mnist1d-cnn"], False),
        (["port", "check"], False),
        (["train", "mnist-cnn"], False),
        (["cookbook", "show"], False),
        (["train", "mnist-cnn"], True),
        (["train", "..."], True),
    ]
    assert found[0][1] == ["train", "mnist1d-cnn", "--framework", "jax"]  # the comment is gone
    assert found[1][1][-4:] == ["4,3,8,8", "--train", "--steps", "10"]  # the continuation joined
    assert failures(GOOD) == []


@pytest.mark.parametrize(
    "line",
    [
        "diptych train mnist-cnn --framework jax --made-up-option 3",  # an option no command has
        "diptych train mnist-cnn --framework jax --nproc",  # an option without its value
        "diptych train no-such-task --framework jax",  # a task click checks (a Choice)
        "diptych export no-such-task --weights w.safetensors --onnx m.onnx",  # a task click takes as text
        "diptych train mnist-cnn --framework mxnet",
        "diptych train mnist-cnn --framework jax --optimizer lion",
        "diptych train mnist-cnn --framework jax --epochs -1",
        "diptych compare mnist-cnn --frameworks torch,tensorflow",  # a callback's refusal
        "diptych frobnicate mnist-cnn",  # no such command
        "diptych data unpack mnist",  # no such subcommand
        "diptych data pack no-such-dataset --out packs/x",
        "diptych cookbook show no-such-recipe",
        "diptych train mnist-cnn --framework jax --epochs NUM",  # a placeholder the allow list lacks
        "diptych port check nowhere.py:Net examples/port/resnet.py:nnx_model --input 4,3,8,8",
        "diptych port check examples/port/resnet.py:NoSuchFactory examples/port/resnet.py:nnx_model --input 4,3,8,8",
        "diptych train mnist-cnn",  # a code block's line must be complete: --framework is required
        "diptych train ... --framework jax",  # '...' only in inline spans
        "diptych eval mnist-cnn --framework jax --weights a.safetensors extra-argument",
    ],
)
def test_a_made_up_command_fails_the_check(line):
    text = f"```bash\n{line}   # a comment\n```\n"
    assert len(commands(text)) == 1
    assert failures(text), line


@pytest.mark.parametrize(
    "span",
    ["`diptych train --made-up-option`", "`diptych train no-such-task`", "`diptych cookbook show nope`"],
)
def test_a_made_up_inline_span_fails_the_check(span):
    assert failures(f"Run {span} to see.\n")


def test_an_inline_span_may_name_part_of_a_command():
    assert failures("`diptych data pack` and `diptych train ... --tensorboard DIR` and `diptych port`.\n") == []


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; at most {README_MAX_LINES}: move the detail to docs/"


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)


def relative_links(text: str) -> list[str]:
    """Targets of the markdown links and images outside code, less URLs (``https:``, ``mailto:``)."""
    plain = re.sub(r"`[^`\n]*`", "", prose(text))
    targets = LINK.findall(plain) + REFERENCE.findall(plain)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def anchors(text: str) -> set[str]:
    """The ids GitHub gives the headings: lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats."""
    seen, ids = {}, set()
    for line in prose(text).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            ids.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return ids


def broken_links(doc: Path) -> list[str]:
    """The relative links of ``doc`` whose file is missing, or whose #anchor names no heading there."""
    bad = []
    for target in relative_links(doc.read_text()):
        path, _, anchor = target.partition("#")
        file = (doc.parent / path) if path else doc
        if not file.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            bad.append(f"{target} (no such heading in {file.name})")
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file(doc):
    bad = broken_links(doc)
    assert not bad, f"{doc.relative_to(ROOT)} has broken links: {bad}"


def test_the_link_check_finds_links_and_misses(tmp_path):
    text = "![p](docs/augment-mnist.png) [a](docs/nowhere.md#x) [w](https://example.org) [s](#top) `[c](x.md)`\n"
    assert relative_links(text) == ["docs/augment-mnist.png", "docs/nowhere.md#x", "#top"]
    assert anchors('# Top\n## Parity: how equal is "equal"?\n## On one machine: `--nproc`\n## Top\n') == {
        "top",
        "parity-how-equal-is-equal",
        "on-one-machine---nproc",
        "top-1",
    }
    doc = tmp_path / "page.md"
    doc.write_text("# Here\n[ok](#here) [gone](#there) [file](page.md#here) [none](nowhere.md) [x](page.md#x)\n")
    assert broken_links(doc) == [
        "#there (no such heading in page.md)",
        "nowhere.md (no such file)",
        "page.md#x (no such heading in page.md)",
    ]


# ----------------------------------------------------------------------------- generated and maintained pages

ARCHITECTURE = ROOT / "docs" / "architecture.md"
TASKS_PAGE = ROOT / "docs" / "tasks.md"
SRC = ROOT / "src" / "diptych"


def unmapped_modules(page: str) -> list[str]:
    """Modules of ``src/diptych`` (paths relative to it) that the architecture page does not name. A twin's
    file may be named once for both twins as ``backends/*/NAME.py``; the cookbook's recipe folders are
    programs, named by the cookbook's own README."""
    missing = []
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC).as_posix()
        if rel.startswith("cookbook/") and rel.count("/") > 1:
            continue
        both = re.sub(r"^backends/(torch|jax)/", "backends/*/", rel)
        if not re.search(rf"(^|\s){re.escape(rel)}\s", page) and not re.search(rf"(^|\s){re.escape(both)}\s", page):
            missing.append(rel)
    return missing


def test_the_architecture_page_names_every_module():
    assert unmapped_modules(ARCHITECTURE.read_text()) == []


def test_the_architecture_check_finds_a_missing_module():
    page = ARCHITECTURE.read_text().replace("runstate.py ", "")
    assert unmapped_modules(page) == ["runstate.py"]


def generated_block(page: str) -> str:
    match = re.search(
        r"<!-- begin: diptych list --markdown -->\n(.*?)\n<!-- end: diptych list --markdown -->", page, re.S
    )
    assert match, "docs/tasks.md lost its markers"
    return match.group(1)


def test_the_tasks_page_is_the_registry_as_it_is():
    """docs/tasks.md is `diptych list --markdown`; after a registry change, paste the command's output there."""
    from conftest import cli_in_process

    proc = cli_in_process("list", "--markdown")
    assert proc.returncode == 0, proc.stderr
    assert generated_block(TASKS_PAGE.read_text()) == proc.stdout.strip(), "docs/tasks.md is stale: regenerate it"
    assert all(f"| {name} |" in proc.stdout for name in TASKS)
