"""``diptych cookbook list|show|run``, the porting guide's doctests, and the recipes' import hygiene."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys

from conftest import run_cli
from diptych.cookbook import FRAMEWORKS, HERE, RECIPES, recipe_file


def test_list_shows_every_recipe_with_both_files():
    proc = run_cli("cookbook", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == list(RECIPES) and len(rows) == 14
    for r in rows:
        assert all(r[fw] for fw in FRAMEWORKS), r  # both files present (their line counts)


def test_recipes_are_standalone_pairs():
    for name in RECIPES:
        for fw in FRAMEWORKS:
            text = recipe_file(name, fw).read_text()
            assert text.startswith('"""') and "Short answer" in text and "seed" in text, (name, fw)
            assert "--fast" in text and "json.dumps" in text, (name, fw)
            imports = [ln for ln in text.splitlines() if "import" in ln and "diptych" in ln]
            assert all("from diptych.data import" in ln for ln in imports), (name, fw, imports)


def test_show_side_by_side_and_html(tmp_path):
    proc = run_cli("cookbook", "show", "autodiff")
    assert proc.returncode == 0, proc.stderr
    header = next(ln for ln in proc.stdout.splitlines() if "autodiff/torch.py" in ln)
    assert "autodiff/jax.py" in header  # the two files in two columns of one table
    assert "jax.custom_vjp" in proc.stdout and "torch.autograd.Function" in proc.stdout
    out = tmp_path / "cookbook.html"
    proc = run_cli("cookbook", "show", "--html", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and "http" not in page.split("<body>")[0]
    assert all(f'id="{name}"' in page and f"{name}/jax.py" in page for name in RECIPES)


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    for args in (["run", "nope"], ["show", "nope"], ["show"], ["run", "mlp", "--framework", "tensorflow"]):
        proc = run_cli("cookbook", *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, (args, proc)
    # no MNIST anywhere: the recipe stops in one line and the CLI passes it on
    env = {"DIPTYCH_DATA": str(tmp_path), "DIPTYCH_CACHE": str(tmp_path), "DIPTYCH_OFFLINE": "1"}
    proc = run_cli("cookbook", "run", "mlp", "--framework", "jax", "--fast", env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "MNIST not available" in proc.stderr and "DIPTYCH_DATA" in proc.stderr


def test_cookbook_package_and_command_never_import_a_framework():
    code = (
        "import sys, diptych.cli, diptych.cookbook, diptych.commands.cookbook; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'jax', 'flax', 'optax'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", (proc.stdout, proc.stderr)


def test_porting_guide_doctests():
    result = doctest.testfile(
        str(HERE / "README.md"),
        module_relative=False,
        verbose=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted >= 20 and result.failed == 0, result
