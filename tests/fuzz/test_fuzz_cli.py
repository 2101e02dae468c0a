"""Fuzz the command line in-process (``diptych.cli.main(argv)``): any argv ends in exit 0 (help, version,
list), in one line on stderr with exit code 2, or reaches the command's work, never in a traceback.

The work itself (training, benchmarking, converting...) is replaced by a stub that raises ``Reached``:
this fuzzes argument parsing and the validation each command does before its work, without training
a model for every accepted argv. The stubs name the functions the commands call; if one moves, the
module fixture fails with what to update, rather than letting an accepted argv start a real run."""

from __future__ import annotations

import contextlib
import importlib
import io

import pytest
from fuzzing import OUTCOMES, fuzz_settings, outcome_counts, report_outcomes  # noqa: F401
from hypothesis import given
from hypothesis import strategies as st

from diptych.cli import cli, main

STUBS = {  # function -> the modules it lives in
    "train_and_evaluate": ("diptych.driver",),
    "evaluate_weights": ("diptych.driver",),
    "compare_frameworks": ("diptych.commands.compare",),
    "run_bench": ("diptych.bench",),
    "transcribe": ("diptych.commands.transcribe",),
    "generate": ("diptych.commands.generate",),
    "run_parity": ("diptych.parity",),
    "convert": ("diptych.commands.convert",),
    "rebuild": ("diptych.bench",),
    "launch": ("diptych.backends.torch.distributed", "diptych.backends.jax.distributed"),
}


class Reached(Exception):
    """The argv was accepted and the command got to its work."""


@pytest.fixture(scope="module")
def stubbed(tmp_path_factory):
    def reached(*args, **kwargs):
        raise Reached

    work = tmp_path_factory.mktemp("cli")
    (work / "file").write_text("x")
    (work / "dir").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name, modules in STUBS.items():
            found = 0
            for module in modules:
                with contextlib.suppress(ImportError):
                    mod = importlib.import_module(module)
                    if hasattr(mod, name):
                        mp.setattr(mod, name, reached)
                        found += 1
            assert found, f"{name} is in none of {modules}: update STUBS in {__file__}"
        mp.chdir(work)  # default --out folders land here
        yield work


OPTIONS = sorted({o for c in cli.commands.values() for p in c.params for o in p.opts if o.startswith("-")})
VALUES = [
    "",
    "0",
    "1",
    "-1",
    "2",
    "3.5",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "-0",
    str(2**31),
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    "9" * 40,
    "torch",
    "jax",
    "torch,jax",
    "mxnet",
    ",",
    "mnist1d-mlp",
    "chars-lstm",
    "fsdd-cnn",
    "mnist-cnn",
    "adam",
    "sgd",
    "cosine",
    "bf16",
    "speaker:anna",
    "official",
    "file",
    "dir",
    "nope/deeper",
    "file/below",
    "w.safetensors",
    "w.pt",
    "w.msgpack",
    "a.wav",
    "--",
    "-h",
    "--help",
    "--version",
]
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
tokens = st.sampled_from(OPTIONS) | st.sampled_from(VALUES) | texts


REQUIRED = {
    "train": ["mnist1d-mlp", "--framework", "torch"],
    "compare": ["mnist1d-mlp"],
    "eval": ["mnist1d-mlp", "--framework", "jax", "--weights", "w.safetensors"],
    "transcribe": ["fsdd-cnn", "--weights", "w.safetensors", "a.wav"],
    "parity": ["mnist1d-mlp"],
    "convert": ["w.safetensors", "w.pt"],
    "bench": ["mnist1d-mlp"],
    "report": ["dir"],
    "generate": ["chars-lstm", "--weights", "w.safetensors"],
    "list": [],
}


@st.composite
def well_formed(draw):
    """A command with its required arguments, then options of that command with drawn values: this
    gets past the parser to each option's own checks (ranges, paths, NaN) and the command's."""
    command = draw(st.sampled_from(sorted(REQUIRED)))
    opts = sorted(o for p in cli.commands[command].params for o in p.opts if o.startswith("--"))
    args = list(REQUIRED[command])
    for _ in range(draw(st.integers(0, 3))):
        args += [draw(st.sampled_from(opts)), draw(st.sampled_from(VALUES) | texts)]
    return [command, *args]


@fuzz_settings(250)
@given(
    argv=well_formed()
    | st.tuples(st.sampled_from(sorted(cli.commands)) | texts, st.lists(tokens, max_size=8)).map(
        lambda t: [t[0], *t[1]]
    )
)
def test_any_argv_is_one_line_or_accepted(stubbed, argv):
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except Reached:
        OUTCOMES["cli", "reached the work"] += 1
        return
    lines = err.getvalue().strip().splitlines()
    if rc == 0:
        OUTCOMES["cli", "exit 0"] += 1
        assert not lines or "Traceback" not in err.getvalue()
        return
    OUTCOMES["cli", "refused"] += 1
    assert rc == 2, (rc, err.getvalue())
    assert len(lines) == 1 and lines[0].startswith("diptych: error: "), err.getvalue()
