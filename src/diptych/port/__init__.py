"""Port your own model between PyTorch and Flax NNX, and prove the port (neutral: frameworks load on call).

* :func:`convert` moves the weights (and running statistics) of a torch ``nn.Module`` into an
  ``nnx.Module`` or back, by layer type, with the layout rules of :mod:`diptych.port.rules`.
* :func:`check` runs diptych's parity checks on the pair (outputs, every gradient, N optimizer steps)
  and, when they part, names the first layer whose activations differ, with a hint.
* :func:`translate` writes the Flax NNX source of a torch model (one NNX class per torch class, the same
  attribute paths), then proves it with :func:`check`.
* :mod:`diptych.port.nnx_layers` has NNX layers that compute what torch's do where Flax's differ.
"""

from __future__ import annotations


def convert(
    src, dst, mapping="auto", *, inputs=None, flatten="auto", jax_layout="auto", torch_model=None, nnx_model=None
) -> dict[str, str]:
    """Copy weights from ``src`` into ``dst``: torch ``nn.Module`` (or a state_dict, with ``torch_model``)
    -> ``nnx.Module``, or ``nnx.Module`` (or an ``nnx.State``, with ``nnx_model``) -> torch ``nn.Module``.

    ``mapping="auto"`` pairs layers by module path and type, then by order and shape (execution order
    when example ``inputs`` in the torch layout are given, else definition order); a dict
    ``{torch_name: nnx_path}`` fixes any pairs (the rest stay automatic). An ambiguous or unmatched
    layer raises :class:`~diptych.errors.DiptychError` listing the candidates. ``flatten``: the Linear
    after a conv stack reads torch's ``(C, H, W)`` flatten; "auto" reorders its input features to the
    ``(H, W, C)`` flatten of a channels-last NNX twin (when the NNX model has convolutions), "same"
    keeps them. Returns the mapping used, ``{torch layer: NNX layer}`` (save it, pass it back).
    """
    from diptych.port._convert import convert as _convert

    return _convert(
        src,
        dst,
        mapping,
        inputs=inputs,
        flatten=flatten,
        jax_layout=jax_layout,
        torch_model=torch_model,
        nnx_model=nnx_model,
    )


def check(torch_model, nnx_model, inputs, train: bool = False, steps: int = 0, **kw):
    """Parity of a port; see :func:`diptych.port._check.check`. Returns a :class:`PortReport`."""
    from diptych.port._check import check as _check

    return _check(torch_model, nnx_model, inputs, train=train, steps=steps, **kw)


def translate(torch_model, example_inputs, *, check: bool = True, train: bool = True, steps: int = 10, **kw):
    """Translate ``torch_model`` (an ``nn.Module``, or a zero-argument factory: then each class's constructor
    arguments become the NNX class's) to Flax NNX source, traced on ``example_inputs`` (arrays in the torch
    layout), and prove it: the torch weights are converted into the emitted model and :func:`check` compares
    outputs, every gradient and ``steps`` optimizer steps (``train``: training mode). Keywords:
    ``jax_layout=True`` (channels-last inputs and maps), ``optimizer``, ``lr``, ``seed``.

    Returns a :class:`~diptych.port._translate.Translation` (``source``, ``mapping``, ``report``, ``classes``,
    ``model``). An operation with no rule raises :class:`~diptych.errors.DiptychError` naming it and its
    torch source line.
    """
    from diptych.port._translate import translate as _translate

    return _translate(torch_model, example_inputs, check=check, train=train, steps=steps, **kw)
