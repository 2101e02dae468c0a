"""``check``: diptych's parity checks on any torch/NNX model pair, and the first layer that differs.

Compared in float32 with the bounds of :mod:`diptych.parity` (its table and its ``Row``): outputs
(max abs <= 1e-5), the loss, every parameter's gradient (max rel <= 1e-4), and with ``steps=N`` the
loss and every parameter and running statistic after each of N optimizer steps on identical batches,
each step starting from the same state (the torch model's, converted into the NNX model), so nothing
compounds (Adam's parameter bound is 1e-3, as in ``diptych parity``). The loss is
``0.5 * mean((output - target)^2)`` summed over the outputs, with a fixed random target, so every
output entry gets a gradient whatever the model computes.

When anything fails, the forward pass is replayed with every module call recorded (torch hooks; the
NNX module classes' ``__call__`` wrapped) and the first mapped layer whose input or output differs is
named, with a hint when its configuration matches a known porting pitfall.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from diptych.errors import DiptychError
from diptych.parity import ADAM_PARAM_BOUND, TOLERANCES, ParityReport, Row, diff
from diptych.port import _nnx, _torch, rules
from diptych.port._convert import Plan, plan, to_nnx_layout, transfer
from diptych.port._locate import locate
from diptych.port.guard import user_code

PORT_TOLERANCES = {
    **TOLERANCES,
    "outputs": ("abs", 1e-5),
    "param, zero gradient": ("rel", None),
    "running stat": ("rel", 1e-4),
    "running stat after every step": ("rel", 1e-4),
}
NULL_GRAD = 1e-5  # a gradient below 1e-5 of the model's largest is float32 noise
PARAM_FLOOR = 0.1  # a tensor's scale is at least 10% of the model's largest entry (see _param_diffs)
GRAD_FLOOR = 1e-2  # see the gradient rows in check()


class PortRow(Row):
    @property
    def metric(self) -> str:
        return PORT_TOLERANCES[self.check][0]

    @property
    def tolerance(self) -> float | None:
        return self.bound if self.bound is not None else PORT_TOLERANCES[self.check][1]


@dataclass
class PortReport(ParityReport):
    mapping: dict = field(default_factory=dict)
    first_divergence: dict | None = None

    def as_dict(self) -> dict:
        grads = [r for r in self.rows if r.check == "gradient"]
        wg = max(grads, key=lambda r: r.max_rel) if grads else None
        outs = [r.max_abs for r in self.rows if r.check == "outputs"]
        return {
            **super().as_dict(),
            "mapping": self.mapping,
            "outputs_max_abs": max(outs) if outs else None,
            "worst_gradient": None
            if wg is None
            else {"tensor": wg.tensor, "max_abs": wg.max_abs, "max_rel": wg.max_rel},
            "first_divergence": self.first_divergence,
        }


def _configure() -> None:
    import jax
    import torch

    jax.config.update("jax_default_matmul_precision", "float32")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _leaves(out) -> list:
    if isinstance(out, (tuple, list)):
        return [x for o in out for x in _leaves(o)]
    if isinstance(out, dict):
        return [x for o in out.values() for x in _leaves(o)]
    return [out] if hasattr(out, "shape") and hasattr(out, "dtype") else []


def _batch(inputs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """A fresh batch like ``inputs``: normal floats of the same scale, integers within the same range."""
    out = []
    for a in inputs:
        if a.dtype.kind in "iu":
            out.append(rng.integers(int(a.min()), int(a.max()) + 1, a.shape).astype(a.dtype))
        else:
            out.append((rng.standard_normal(a.shape) * (a.std() or 1.0) + a.mean()).astype(a.dtype))
    return out


class _Pair:
    """Both models' forward/loss/gradient/step, on torch-layout numpy batches."""

    def __init__(self, tm, nm, p: Plan, train: bool, optimizer: str, lr: float):
        import optax
        import torch
        from flax import nnx

        self.tm, self.nm, self.p = tm, nm, p
        tm.train(train)
        nm.train() if train else nm.eval()
        params = [v for v in tm.parameters() if v.requires_grad]
        self.topt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
        tx = optax.adam(lr) if optimizer == "adam" else optax.sgd(lr)
        self.nopt = nnx.Optimizer(nm, tx, wrt=nnx.Param)

        def loss_fn(model, xs, targets):
            outs = _leaves(model(*xs))
            return sum(0.5 * ((o - t) ** 2).mean() for o, t in zip(outs, targets, strict=True))

        self.grad_fn = nnx.jit(nnx.value_and_grad(loss_fn))

        @nnx.jit
        def update(model, opt, grads):
            opt.update(model, grads)

        def step(model, opt, xs, targets):  # the gradient's compiled function is reused: one compile
            loss, grads = self.grad_fn(model, xs, targets)
            update(model, opt, grads)
            return loss

        self.step_fn = step

    def torch_loss(self, xs, targets):
        import torch

        outs = _leaves(self.tm(*[torch.from_numpy(np.ascontiguousarray(x)) for x in xs]))
        return sum(0.5 * ((o - torch.from_numpy(t)) ** 2).mean() for o, t in zip(outs, targets, strict=True))

    def nnx_inputs(self, xs, targets, ref_shapes):
        import jax.numpy as jnp

        nt = [np.moveaxis(t, 1, -1) if self.p.channels_last and t.ndim == self.p.spatial + 2 else t for t in targets]
        return [jnp.asarray(x) for x in to_nnx_layout(xs, self.p)], [jnp.asarray(t) for t in nt]


def check(
    torch_model,
    nnx_model,
    inputs,
    train: bool = False,
    steps: int = 0,
    *,
    optimizer: str = "sgd",
    lr: float = 1e-2,
    mapping="auto",
    jax_layout: str = "auto",
    flatten: str = "auto",
    load: bool = True,
    seed: int = 0,
) -> PortReport:
    """Prove ``nnx_model`` computes what ``torch_model`` computes; see the module docstring.

    ``inputs``: numpy arrays in the torch model's layout (image maps are moved channels-last for a
    channels-last NNX twin). ``train``: both in training mode (batch statistics, dropout as the models
    set it). ``steps``: N optimizer steps (``optimizer`` sgd or adam, ``lr``). ``load=False`` keeps the
    NNX model's own weights for the first comparison (to check a hand-made conversion).
    """
    import jax
    import torch
    from flax import nnx

    from diptych.port._trace import torch_calls

    if optimizer not in ("sgd", "adam"):
        raise DiptychError(f"optimizer must be sgd or adam, not {optimizer!r}")
    _configure()
    inputs = [np.asarray(a) for a in inputs]
    inputs = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in inputs]
    p = plan(torch_model, nnx_model, mapping, inputs, flatten, jax_layout)
    if load:
        transfer(p, torch_model, nnx_model, "nnx")
    pair = _Pair(torch_model, nnx_model, p, train, optimizer, lr)
    report = PortReport(
        f"{type(torch_model).__name__} -> {type(nnx_model).__name__}", optimizer, steps, mapping=p.mapping
    )
    rng = np.random.default_rng(seed)

    # (1) one recorded forward pass of copies (a train-mode BatchNorm updates its statistics)
    # Every run of a model is the user's code: its exception is one line naming the inputs (guard.py).
    with user_code("the torch model", inputs):
        tcalls, tout = torch_calls(copy.deepcopy(torch_model), [torch.from_numpy(a.copy()) for a in inputs])
    nin, _ = pair.nnx_inputs(inputs, [], [])
    with user_code("the NNX model", nin):
        ncalls, nout = _nnx_recorded(nnx.clone(nnx_model), nin)
    t_leaves = [o.detach().numpy() for o in _leaves(tout)]
    n_leaves = [np.asarray(o) for o in _leaves(nout)]
    if not t_leaves:
        raise DiptychError(
            f"the torch model returns no tensor ({type(tout).__name__}); return its output: a tensor, "
            f"or a tuple or dict of tensors"
        )
    for i, a in enumerate(t_leaves):
        if a.dtype.kind != "f":
            raise DiptychError(
                f"output {i} of the torch model is {a.dtype}: the check compares gradients, so every "
                f"output must be floating point (return logits or values, not argmax or ids)"
            )
    if len(t_leaves) != len(n_leaves):
        raise DiptychError(f"the torch model returns {len(t_leaves)} arrays and the NNX model {len(n_leaves)}")
    for i, (a, b) in enumerate(zip(t_leaves, n_leaves, strict=True)):
        b2 = rules.to_torch_layout(b, a.shape, p)
        if b2 is None:
            raise DiptychError(
                f"output {i}: torch gives shape {a.shape}, NNX {b.shape}; they cannot be compared "
                f"(channels-last maps are moved back; pass jax_layout='same' if the NNX twin "
                f"takes the torch layout)"
            )
        report.rows.append(PortRow("outputs", f"output {i} {tuple(a.shape)}", *diff(b2, a)))
    targets = [rng.standard_normal(a.shape).astype(np.float32) for a in t_leaves]

    # (2) loss and every gradient (training mode also moves running statistics: compared after)
    with user_code("the torch model", inputs):
        t_loss = pair.torch_loss(inputs, targets)
        pair.topt.zero_grad()
        t_loss.backward()
    nx, nt = pair.nnx_inputs(inputs, targets, None)
    with user_code("the NNX model", nx):
        n_loss, n_grads = pair.grad_fn(nnx_model, nx, nt)
    report.rows.append(PortRow("loss", "0.5 mean (out - target)^2", *diff(float(n_loss), t_loss.item())))
    tparams = dict(torch_model.named_parameters())
    gtree = nnx.to_pure_dict(n_grads)
    # A gradient that is zero in exact arithmetic (a conv bias before a train-mode BatchNorm) is float32
    # noise in both twins; relative to its own scale it would be "100% different". Its scale is floored
    # at GRAD_FLOOR of the model's largest gradient entry.
    null: set[str] = set()  # NNX variables of layers whose gradient is zero in exact arithmetic
    gmax = max((float(v.grad.abs().max()) for v in tparams.values() if v.grad is not None), default=0.0)
    for t, n, _ in p.pairs:
        ng = {k: np.asarray(_at(gtree, vp)) for k, vp in n.keys.items() if _at(gtree, vp) is not None}
        tg = rules.to_torch(t.kind, ng, p.cfg(t, n), grad=True)
        for k, key in t.keys.items():
            if key in tparams and tparams[key].grad is not None and k in tg:
                ref = tparams[key].grad.numpy()
                d, _ = diff(tg[k], ref)
                scale = max(float(np.abs(ref).max()) if ref.size else 0.0, GRAD_FLOOR * gmax)
                report.rows.append(PortRow("gradient", key, d, d / scale if scale > 0 else (0.0 if d == 0 else np.inf)))
                if float(np.abs(ref).max() if ref.size else 0.0) <= NULL_GRAD * gmax:
                    null.update(f"{n.name}.{nk}" for nk in n.keys)
    if train:
        report.rows += _stat_rows(p, torch_model, nnx_model, "running stat")

    # (3) N steps, each from the torch model's state
    step_loss, step_param = [], {}
    bound = ADAM_PARAM_BOUND if optimizer == "adam" else None
    for s in range(steps):
        xs = inputs if s == 0 else _batch(inputs, rng)
        transfer(p, torch_model, nnx_model, "nnx")
        with user_code("the torch model", xs):
            pair.topt.zero_grad()
            lt = pair.torch_loss(xs, targets)
            lt.backward()
            pair.topt.step()
        nx, nt = pair.nnx_inputs(xs, targets, None)
        with user_code("the NNX model", nx):
            lj = pair.step_fn(nnx_model, pair.nopt, nx, nt)
        step_loss.append(diff(float(lj), lt.item()))
        for name, d in _param_diffs(p, torch_model, nnx_model).items():
            if s == 0 and not name.startswith("stat ") and name not in null:
                report.rows.append(PortRow("param after 1 step", name, *d, bound=bound))
            if d[1] >= step_param.get(name, (0.0, -1.0))[1]:
                step_param[name] = d
    if steps:
        worst = int(np.argmax([r for _, r in step_loss]))
        report.rows.append(PortRow("loss at every step", f"{steps} steps (worst: step {worst + 1})", *step_loss[worst]))
        for name, d in step_param.items():
            if name.startswith("stat "):
                report.rows.append(PortRow("running stat after every step", name[5:], *d))
            elif name in null:  # Adam turns its noise gradient into a full-size step of random sign
                report.rows.append(PortRow("param, zero gradient", name, *d))
            else:
                report.rows.append(PortRow("param after every step", name, *d, bound=bound))
    if not report.ok:
        report.first_divergence = locate(p, torch_model, nnx_model, tcalls, ncalls, report, load)
    del jax
    return report


def _nnx_recorded(model, xs):
    """One recorded forward pass, compiled once (op-by-op eager JAX compiles every op for its shapes)."""
    import jax
    from flax import nnx

    from diptych.port._trace import nnx_calls

    held = {}

    @nnx.jit
    def run(model, xs):
        outer = getattr(xs[0], "_trace", None)

        def keep(t):  # this trace's values, not those of a scan body inside it
            return outer is not None and getattr(t, "_trace", None) is outer

        calls, out = nnx_calls(model, list(xs), keep=keep)
        held["calls"] = calls
        return out, [(c.inputs, c.output) for c in calls]

    try:
        out, vals = run(model, list(xs))
    except Exception:  # an unusual trace: fall back to the eager pass
        return nnx_calls(model, list(xs))
    calls = held["calls"]
    for c, (i, o) in zip(calls, vals, strict=True):
        c.inputs = None if i is None else np.asarray(i)
        c.output = None if o is None else np.asarray(o)
    del jax
    return calls, out


def _at(tree, path):
    for k in path:
        if not isinstance(tree, dict) or k not in tree:
            return None
        tree = tree[k]
    return tree


def _stat_rows(p: Plan, tm, nm, check: str) -> list[PortRow]:
    rows = []
    for t, n, _ in p.pairs:
        if t.kind != "batchnorm" or "running_mean" not in t.keys:
            continue
        want, have = rules.to_nnx(t.kind, _torch.get(tm, t), p.cfg(t, n)), _nnx.get(nm, n)
        rows += [PortRow(check, f"{n.name}.{k}", *diff(have[k], want[k])) for k in ("mean", "var") if k in have]
    return rows


def _param_diffs(p: Plan, tm, nm) -> dict[str, tuple[float, float]]:
    """Every NNX variable against the torch model's converted one (statistics prefixed ``stat``)."""
    pairs = []
    nvars = _nnx.all_variables(nm)
    for t, n, _ in p.pairs:
        want, have = rules.to_nnx(t.kind, _torch.get(tm, t), p.cfg(t, n)), _nnx.get(nm, n, nvars)
        for k in want:
            if k in have:
                stat = t.kind == "batchnorm" and k in ("mean", "var")
                pairs.append((("stat " if stat else "") + f"{n.name}.{k}", have[k], want[k]))
    # A tensor that starts at zero (a bias; an attention key bias, whose gradient is zero) is measured
    # against PARAM_FLOOR of the model's largest entry rather than its own tiny scale: otherwise the
    # float32 noise of a deep BatchNorm net's gradient, times lr, fails a bias that weights of the
    # same layer pass (measured: ResNet-18-style stem bn1.bias 1.1e-4 against its own 0.027 scale).
    top = max((float(np.abs(w).max()) for _, _, w in pairs if w.size), default=0.0)
    out = {}
    for name, h, w in pairs:
        d, _ = diff(h, w)
        scale = max(float(np.abs(w).max()) if w.size else 0.0, PARAM_FLOOR * top)
        out[name] = (d, d / scale if scale > 0 else (0.0 if d == 0 else float("inf")))
    return out
