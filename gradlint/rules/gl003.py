"""GL003 nonscalar-backward: backward without `gradient=` on a tensor proven not to be a scalar.

torch can only make up the starting gradient of a one-element tensor; for anything else
`loss.backward()` raises "grad can be implicitly created only for scalar outputs" (and
`torch.autograd.grad` without `grad_outputs=` does the same). The shapes come from
`gradlint.analysis.scalars`; when a root's size is unknown the rule says nothing. A root that holds one
value per sample of a batch fails for any batch larger than 1; the 0-dim loss of a module wrapped in
`nn.DataParallel` is gathered into one loss per GPU and fails on more than one GPU: the message says
which condition applies. What a LightningModule's `training_step` returns (automatic optimization)
is backpropagated by Lightning and is checked the same way.
"""

from __future__ import annotations

from typing import Iterable, Optional

import libcst as cst

from gradlint.analysis import Context
from gradlint.analysis.names import dotted
from gradlint.analysis.scalars import nonscalar_roots
from gradlint.findings import Edit, Finding, Fix

# What the missing argument is called in each form of backward.
_GRADIENT_ARGUMENT = {
    "tensor": "gradient=",
    "delegate": "gradient=",
    "manual": "gradient=",
    "autograd.backward": "grad_tensors=",
    "autograd.grad": "grad_outputs=",
}


def check(ctx: Context) -> Iterable[Finding]:
    """One error per backward without a gradient whose root is proven to hold several elements."""
    found = ctx.fact(
        "scalars.nonscalar_roots",
        lambda: nonscalar_roots(ctx.module, ctx.imports, ctx.path, ctx.options.project_root),
    )
    for call, root, shape in found:
        name = ctx.code(root)
        argument = _GRADIENT_ARGUMENT.get(call.kind, "gradient=")
        reduce_hint = f"`{name}.mean()` or `{name}.sum()`" if _simple(name) else "`.mean()` or `.sum()`"
        if call.kind == "lightning":  # automatic optimization: Lightning runs the backward
            message = (
                f"`training_step` returns `{_short(name)}` for Lightning to backpropagate, but it "
                f"{shape.condition} ({shape.why}); reduce it first ({reduce_hint})"
            )
        else:
            message = (
                f"`{_short(ctx.code(call.node))}` starts from `{name}`, which {shape.condition} ({shape.why}); "
                f"reduce it first ({reduce_hint}) or pass `{argument}` with one weight per element"
            )
        yield ctx.finding("GL003", call.node, message, fix=_mean_fix(ctx, root, name))


def _mean_fix(ctx: Context, root: cst.BaseExpression, name: str) -> Optional[Fix]:
    """Reduce the root where the backward starts from it: `loss.backward()` ->
    `loss.mean().backward()`, `engine.backward(loss)` -> `engine.backward(loss.mean())`. Only for
    a plain name or attribute; it changes the gradients' scale and meaning (one mean over the
    batch or the GPUs), so it is a fix to apply knowingly (unsafe), never silently."""
    if not isinstance(root, (cst.Name, cst.Attribute)) or dotted(root) is None:
        return None
    end = ctx.position(root).end
    offset = ctx.offset(end.line, end.column)
    return Fix(f"Reduce `{name}` with `.mean()` before the backward", (Edit(offset, offset, ".mean()"),))


def _simple(text: str) -> bool:
    return text.replace(".", "").replace("_", "").isalnum()


def _short(code: str, limit: int = 60) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."
