"""``diptych port``: convert your own model between PyTorch and Flax NNX, and prove the port."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np

from diptych.errors import DiptychError
from diptych.formats import read_tensors

# The inputs' memory, bounded before anything is allocated: each input is held about HELD times over
# (drawn in float64 or int64, the array, the torch and NNX copies, a fresh batch per step).
INPUT_MEMORY_LIMIT = 2**30
HELD = 4
MAX_DIMS = 16


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise DiptychError(f"--input {text!r}: a shape is comma-separated integers, e.g. 2,3,32,32") from None
    if not shape or any(d < 1 for d in shape):
        raise DiptychError(f"--input {text!r}: every dimension must be >= 1")
    if len(shape) > MAX_DIMS:
        raise DiptychError(f"--input {text!r}: {len(shape)} dimensions; at most {MAX_DIMS}")
    return shape


def _finite(ctx, param, value):
    if value is not None and not math.isfinite(value):  # FloatRange lets nan through (no comparison holds)
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def _gib(n: int) -> str:
    if n >= 2**50:
        return f"{n / 2**30:.1e} GiB"
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def _inputs(shapes, dtype: str, seed: int, high: int) -> list[np.ndarray]:
    """Random inputs of the ``--input`` shapes: refused when they would take more than INPUT_MEMORY_LIMIT."""
    parsed = [_shape(s) for s in shapes]
    itemsize = np.dtype(dtype).itemsize
    need = sum(math.prod(s) for s in parsed) * itemsize * HELD  # math.prod: exact, never wraps like np.prod
    if need > INPUT_MEMORY_LIMIT:
        raise DiptychError(
            f"--input {' '.join(shapes)}: the inputs would take about {_gib(need)} of memory ({dtype}, held "
            f"about {HELD} times over), above the limit of {_gib(INPUT_MEMORY_LIMIT)}; a check needs only a "
            f"small batch, e.g. a batch of 2"
        )
    rng = np.random.default_rng(seed)
    if dtype == "int64":
        return [rng.integers(0, high, s).astype(np.int64) for s in parsed]
    return [rng.standard_normal(s).astype(np.float32) for s in parsed]


def _print(report) -> None:
    from diptych.parity import print_report

    print_report(report)
    click.echo("mapping: " + ", ".join(f"{k} -> {v}" for k, v in report.mapping.items()))
    fd = report.first_divergence
    if fd:
        click.echo(
            f"first divergence: {fd['layer']} ({fd['kind']}, torch {fd['torch']} / NNX {fd['nnx']}): "
            f"{fd['detail']}; max abs {fd['max_abs']:.2e}, max rel {fd['max_rel']:.2e}"
        )
        if fd.get("hint"):
            click.echo(f"hint: {fd['hint']}")


@click.group("port")
def port():
    """Port your own model: convert weights torch <-> Flax NNX and prove the two agree."""


def _run_check(tm, nm, inputs, train, steps, optimizer, lr, jax_layout, as_json, flatten="auto") -> int:
    from diptych.port import check

    report = check(
        tm, nm, inputs, train=train, steps=steps, optimizer=optimizer, lr=lr, jax_layout=jax_layout, flatten=flatten
    )
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        _print(report)
    return 0 if report.ok else 1


_input = click.option(
    "--input",
    "shapes",
    multiple=True,
    metavar="SHAPE",
    help="An input's shape in the torch layout, comma-separated (repeat for several inputs).",
)
_dtype = click.option(
    "--dtype",
    type=click.Choice(["float32", "int64"]),
    default="float32",
    show_default=True,
    help="Input dtype (int64: token ids below --vocab).",
)
_vocab = click.option(
    "--vocab",
    type=click.IntRange(1, 2**62),
    default=10,
    show_default=True,
    help="int64 inputs: ids are drawn from [0, vocab).",
)
_layout = click.option(
    "--jax-layout",
    type=click.Choice(["auto", "channels-last", "same"]),
    default="auto",
    show_default=True,
    help="auto: image inputs move channels-last when the model has convs.",
)
_flatten = click.option(
    "--flatten",
    type=click.Choice(["auto", "channels-last", "same"]),
    default="auto",
    show_default=True,
    help="The order the Linear after a conv stack reads: auto (H, W, C when the NNX twin has convs); same: "
    "torch's (C, H, W), as `port translate`'s models flatten.",
)


@port.command("check")
@click.argument("torch_factory", metavar="FILE.py:TORCH_FACTORY")
@click.argument("jax_factory", metavar="FILE.py:JAX_FACTORY")
@_input
@_dtype
@_vocab
@click.option("--train", is_flag=True, help="Both models in training mode (BatchNorm batch statistics).")
@click.option("--steps", type=click.IntRange(min=0), default=0, show_default=True, help="Optimizer steps to compare.")
@click.option(
    "--optimizer",
    type=click.Choice(["sgd", "adam"]),
    default="sgd",
    show_default=True,
    help="sgd: parameters within 1e-4 rel; adam: 1e-3 (its first step is sign(g): noise entries flip).",
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), callback=_finite, default=1e-2, show_default=True)
@_layout
@_flatten
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check_cmd(
    torch_factory, jax_factory, shapes, dtype, vocab, train, steps, optimizer, lr, jax_layout, flatten, seed, as_json
):
    """Copy the torch model's weights into the NNX model and compare outputs, gradients and N steps.

    Exit 0: within diptych's parity bounds; 1: not (the first diverging layer and a hint are printed).
    """
    from diptych.port import factory

    if not shapes:
        raise DiptychError("give at least one --input SHAPE, e.g. --input 2,3,32,32")
    inputs = _inputs(shapes, dtype, seed, vocab)
    tm, nm = factory.load(torch_factory, "torch", seed), factory.load(jax_factory, "jax", seed)
    return _run_check(tm, nm, inputs, train, steps, optimizer, lr, jax_layout, as_json, flatten)


def _WEIGHTS():
    """The NNX variables a weights file holds: parameters and running statistics (no RNG state)."""
    from flax import nnx

    return nnx.Any(nnx.Param, nnx.BatchStat)


@port.command("convert")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--torch", "torch_factory", required=True, metavar="FILE.py:FACTORY", help="The torch model.")
@click.option("--jax", "jax_factory", required=True, metavar="FILE.py:FACTORY", help="The NNX model.")
@_input
@_dtype
@_vocab
@_layout
@_flatten
@click.option("--no-check", is_flag=True, help="Skip the parity check of the converted pair.")
def convert_cmd(src, dst, torch_factory, jax_factory, shapes, dtype, vocab, jax_layout, flatten, no_check):
    """SRC .pt/.safetensors -> DST .msgpack (Flax NNX state), or back; the round trip is checked bit-exact."""
    import torch
    from flax import nnx, serialization

    from diptych.backends import load_backend
    from diptych.fsio import atomic_path, atomic_write
    from diptych.port import convert, factory

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise DiptychError(f"{src}: no such file")
    tm, nm = factory.load(torch_factory, "torch"), factory.load(jax_factory, "jax")
    inputs = _inputs(shapes, dtype, 0, vocab) if shapes else None
    if src.suffix == ".msgpack":
        state = nnx.state(nm, _WEIGHTS())
        try:
            nnx.replace_by_pure_dict(state, serialization.msgpack_restore(src.read_bytes()))
        except Exception as e:
            raise DiptychError(f"{src} is not a Flax state of this NNX model ({type(e).__name__})") from None
        nnx.update(nm, state)
        mapping = convert(nm, tm, inputs=inputs, jax_layout=jax_layout, flatten=flatten)
        sd = {k: v.detach().clone() for k, v in tm.state_dict().items()}
        if dst.suffix == ".safetensors":
            from safetensors.torch import save_file

            with atomic_path(dst) as tmp:
                save_file({k: v.contiguous() for k, v in sd.items()}, tmp)
        else:
            atomic_write(dst, load_backend("torch").weights.to_bytes(sd))
        back = factory.load(jax_factory, "jax", 1)
        convert(tm, back, mapping, inputs=inputs, jax_layout=jax_layout, flatten=flatten)
        a, b = nnx.to_pure_dict(nnx.state(nm, _WEIGHTS())), nnx.to_pure_dict(nnx.state(back, _WEIGHTS()))
    else:
        try:
            tm.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in read_tensors(src).items()})
        except RuntimeError as e:
            raise DiptychError(f"{src} does not fit {torch_factory}: {str(e).splitlines()[0]}") from None
        mapping = convert(tm, nm, inputs=inputs, jax_layout=jax_layout, flatten=flatten)
        data = serialization.msgpack_serialize(nnx.to_pure_dict(nnx.state(nm, _WEIGHTS())))
        with atomic_path(dst) as tmp:
            Path(tmp).write_bytes(data)
        back = factory.load(torch_factory, "torch", 1)
        convert(nm, back, mapping, inputs=inputs, jax_layout=jax_layout, flatten=flatten)
        a, b = tm.state_dict(), back.state_dict()
        a = {k: v.numpy() for k, v in a.items() if not k.endswith("num_batches_tracked")}
        b = {k: v.numpy() for k, v in b.items() if not k.endswith("num_batches_tracked")}
    import jax

    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    exact = len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )
    click.echo(f"{src} -> {dst}: {len(mapping)} layers; round trip {'bit-exact' if exact else 'NOT bit-exact'}")
    if not exact:
        click.echo(
            "diptych: the round trip changed some tensors (Flax's one-bias recurrent cells fold torch's two "
            "biases; use diptych.port.nnx_layers cells)",
            err=True,
        )
        return 1
    if no_check:
        return 0
    if inputs is None:
        raise DiptychError("the check needs --input SHAPE (or pass --no-check)")
    return _run_check(tm, nm, inputs, False, 0, "sgd", 1e-2, jax_layout, False, flatten)


@port.command("export")
@click.argument("torch_factory", metavar="FILE.py:TORCH_FACTORY")
@click.argument("out", type=click.Path(dir_okay=False), metavar="OUT.onnx")
@_input
@_dtype
@_vocab
@click.option("--weights", type=click.Path(dir_okay=False), help="A .pt/.safetensors state_dict to load first.")
@click.option("--jax", "jax_factory", metavar="FILE.py:FACTORY", help="Also verify against this NNX twin.")
@_layout
def port_export_cmd(torch_factory, out, shapes, dtype, vocab, weights, jax_factory, jax_layout):
    """Export a ported model (its torch side) to ONNX, verified with onnxruntime (max abs <= 1e-5)."""
    import torch

    from diptych.backends import load_backend
    from diptych.commands.export import TOLERANCE, run_onnx
    from diptych.fsio import atomic_write
    from diptych.port import convert, factory
    from diptych.port.guard import user_code

    if len(shapes) != 1:
        raise DiptychError("give exactly one --input SHAPE (the exported graph has one input, batch axis dynamic)")
    x = _inputs(shapes, dtype, 0, vocab)[0]
    tm = factory.load(torch_factory, "torch")
    if weights:
        try:
            tm.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in read_tensors(weights).items()})
        except RuntimeError as e:
            raise DiptychError(f"{weights} does not fit {torch_factory}: {str(e).splitlines()[0]}") from None
    tm.eval()
    with torch.no_grad(), user_code("the torch model", [x]):
        want = tm(torch.from_numpy(x))
    want = want[0] if isinstance(want, (tuple, list)) and want else want
    if not isinstance(want, torch.Tensor) or not want.is_floating_point():
        what = f"a {want.dtype} tensor" if isinstance(want, torch.Tensor) else type(want).__name__
        raise DiptychError(f"the torch model returns {what}; export needs a model that returns a float tensor")
    want = want.numpy()
    refs = {"torch": want}
    if jax_factory:
        import jax.numpy as jnp

        from diptych.port._convert import plan, to_nnx_layout

        nm = factory.load(jax_factory, "jax")
        nm.eval()
        convert(tm, nm, inputs=[x], jax_layout=jax_layout)
        p = plan(tm, nm, "auto", [x], "auto", jax_layout)
        nin = to_nnx_layout([x], p)
        with user_code("the NNX model", nin):
            y = np.asarray(nm(*[jnp.asarray(a) for a in nin]))
        refs["jax"] = np.moveaxis(y, -1, 1) if p.channels_last and y.ndim == p.spatial + 2 else y
    model = load_backend("torch").onnx.export_module(tm, x)
    got = run_onnx(model, x)
    diffs = {k: float(np.max(np.abs(got - v))) for k, v in refs.items()}
    if any(d > TOLERANCE for d in diffs.values()):
        raise DiptychError(
            "the ONNX model differs: "
            + ", ".join(f"{k} max abs {d:.1e}" for k, d in diffs.items())
            + f" (bound {TOLERANCE:g}); not written"
        )
    atomic_write(out, model)
    click.echo(f"{out}: verified with onnxruntime: " + ", ".join(f"max abs {d:.1e} vs {k}" for k, d in diffs.items()))


@port.command("translate")
@click.argument("torch_factory", metavar="FILE.py:FACTORY")
@_input
@_dtype
@_vocab
@click.option("--out", type=click.Path(dir_okay=False), help="The NNX source to write [default: FILE_nnx.py here].")
@click.option("--train", is_flag=True, help="Check in training mode (BatchNorm batch statistics).")
@click.option("--steps", type=click.IntRange(min=0), default=0, show_default=True, help="Optimizer steps to compare.")
@click.option("--no-check", is_flag=True, help="Write the source without the check.")
@click.option("--jax-layout", is_flag=True, help="Channels-last maps in and out (the transposes at the boundary).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), callback=_finite, default=1e-2, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def translate_cmd(
    torch_factory, shapes, dtype, vocab, out, train, steps, no_check, jax_layout, optimizer, lr, seed, as_json
):
    """Write the Flax NNX source of a torch model, then prove it with `port check`.

    One NNX class per torch class, at the same attribute paths (so `port convert` needs no mapping).
    Exit 0: written and within diptych's parity bounds; 1: written, but the check fails (the first
    diverging layer is printed); 2: an operation with no rule (named, with its source line), no file.
    """
    from diptych.fsio import atomic_write
    from diptych.port import factory, translate

    if not shapes:
        raise DiptychError("give at least one --input SHAPE, e.g. --input 2,3,32,32")
    inputs = _inputs(shapes, dtype, seed, vocab)
    fn = factory.find(torch_factory)
    tr = translate(
        fn,
        inputs,
        check=not no_check,
        train=train,
        steps=steps,
        jax_layout=jax_layout,
        optimizer=optimizer,
        lr=lr,
        seed=seed,
    )
    path = Path(out) if out else Path(f"{Path(torch_factory.rpartition(':')[0]).stem}_nnx.py")
    atomic_write(path, tr.source.encode())
    if as_json:
        report = tr.report.as_dict() if tr.report is not None else None
        click.echo(json.dumps({"ok": tr.ok, "out": str(path), "classes": tr.classes, "check": report}))
    else:
        if tr.report is not None:
            _print(tr.report)
        checked = "not checked" if tr.report is None else "check passes" if tr.ok else "check FAILS"
        click.echo(f"{path}: {len(tr.classes)} NNX classes ({', '.join(tr.classes)}); {checked}")
    return 0 if tr.ok else 1
