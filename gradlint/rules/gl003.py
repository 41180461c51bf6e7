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

from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple

from gradlint.findings import Edit, Finding, Fix
from gradlint.rules import Needs, Rule

if TYPE_CHECKING:  # pragma: no cover - types only; the analysis is imported by `check`
    import libcst as cst

    from gradlint.analysis import Context

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
    for call, root, shape in ctx.nonscalar_roots:
        name = ctx.code(root)
        argument = _GRADIENT_ARGUMENT.get(call.kind, "gradient=")
        reduce_hint = f"`{name}.mean()` or `{name}.sum()`" if _simple(name) else "`.mean()` or `.sum()`"
        if call.kind == "lightning":  # automatic optimization: Lightning runs the backward
            message = (
                f"`training_step` returns `{_short(name)}` for Lightning to backpropagate, but it "
                f"{shape.condition} ({shape.why})"
            )
            help = f"reduce it first ({reduce_hint})"
        else:
            message = f"`{_short(ctx.code(call.node))}` starts from `{name}`, which {shape.condition} ({shape.why})"
            help = f"reduce it first ({reduce_hint}) or pass `{argument}` with one weight per element"
        yield ctx.finding(RULE.code, call.node, message, fix=_mean_fix(ctx, root, name), help=help)


def _mean_fix(ctx: Context, root: cst.CSTNode, name: str) -> Optional[Fix]:
    """Reduce the root where the backward starts from it: `loss.backward()` ->
    `loss.mean().backward()`, `engine.backward(loss)` -> `engine.backward(loss.mean())`. Only for
    a plain name or attribute; it changes the gradients' scale and meaning (one mean over the
    batch or the GPUs), so it is a fix to apply knowingly (unsafe), never silently."""
    import libcst as cst

    from gradlint.analysis.names import dotted

    if not isinstance(root, (cst.Name, cst.Attribute)) or dotted(root) is None:
        return None
    end = ctx.position(root).end
    offset = ctx.offset(end.line, end.column)
    return Fix(f"Reduce `{name}` with `.mean()` before the backward", (Edit(offset, offset, ".mean()"),),
               applicability="unsafe")


def _simple(text: str) -> bool:
    return text.replace(".", "").replace("_", "").isalnum()


def _short(code: str, limit: int = 60) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."


# ------------------------------------------------------------------------------ gradlint run


def judge(sites: list, cwd: str, finding: Any = None, obs: Any = None) -> Tuple[str, str]:
    """Runtime verdict: confirmed when the backward ran on a tensor of several elements. A finding
    whose claim holds only on more than one GPU (a DataParallel gather) is unexercised, not
    refuted, by a run on fewer GPUs; one whose root always had one element but dimensions ((1,),
    (1, 1): a batch of one sample) is unexercised too. Refuted: one-element roots otherwise."""
    from gradlint.analysis.shape_conditions import CONDITIONS
    from gradlint.runtime.events import ONE_SAMPLE_ROOT
    from gradlint.runtime.judges import CONFIRMED, REFUTED, UNEXERCISED, plural

    bad = [s for s in sites if s.nonscalar]
    if bad:
        shape = next((s.nonscalar_shape for s in bad if s.nonscalar_shape is not None), None)
        count = sum(s.nonscalar for s in bad)
        numel = 1
        for size in shape or ():
            numel *= size
        return CONFIRMED, (
            f"backward ran {plural(count, 'time')} on a tensor of shape {tuple(shape or ())} "
            f"({plural(numel, 'element')}) without a gradient"
        )
    calls = sum(s.calls for s in sites)
    if not calls:
        return UNEXERCISED, "this code did not run a backward"
    message = finding.message if finding is not None else ""
    gpus = obs.gpus if obs is not None else 0
    if CONDITIONS["gathered"] in message and gpus < 2:
        return UNEXERCISED, (f"the backward ran {plural(calls, 'time')} on a one-element tensor, but DataParallel "
                             f"gathers one loss per GPU only on 2 or more GPUs and this run saw {gpus}")
    one_sample = sum(s.counts.get(ONE_SAMPLE_ROOT, 0) for s in sites)
    if one_sample == calls and CONDITIONS["gathered"] not in message:
        # shapes like (1,) or (1, 1): one value per sample or per element, of which there was one
        return UNEXERCISED, (f"the backward ran {plural(calls, 'time')}, always on a one-element tensor with "
                             f"dimensions (a batch of one sample); more elements fail")
    return REFUTED, f"the backward ran {plural(calls, 'time')}, always on a one-element tensor"


def observe(site, cwd: str, covered: bool, peers: Optional[list] = None,
            ran: Optional[set] = None) -> List[Tuple[str, str, Optional[str]]]:
    """A backward on a tensor of several elements at a site no static GL003 points to."""
    if covered or not site.nonscalar:
        return []
    _, evidence = judge([site], cwd)
    return [("backward on a tensor of more than one element without `gradient=`; reduce it to a "
             "scalar (e.g. .mean()) or pass the gradient", evidence, None)]


RULE = Rule(
    code="GL003",
    name="nonscalar-backward",
    summary="backward() without gradient= on a tensor proven not to be a scalar",
    severity="error",
    default_on=True,
    fix="unsafe",  # `.mean()` changes the gradients' scale: review it
    tags=("correctness", "pytorch", "autograd"),
    gitlab_category="Bug Risk",
    # a backward call, `torch.autograd.grad` (every spelling of it names `autograd`), or a
    # LightningModule's `training_step` whose return Lightning backpropagates
    needs=Needs(words=("backward", "autograd", "training_step"), names=("backward", "manual_backward"),
                autograd_names=("grad",), defines=("training_step",), helpers=True),
    check=check,
    judge=judge,
    observe=observe,
)
