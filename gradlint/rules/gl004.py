"""GL004 clip-grad-misuse: gradient clipping that cannot do its job.

(a) With mixed precision, `scaler.scale(loss).backward()` leaves every gradient multiplied by the
loss scale (65536 at the start). `clip_grad_norm_` on them before `scaler.unscale_(optimizer)`
compares the scaled norm with the threshold: clipping then fires on every step and shrinks the
update by the scale factor (or, for `clip_grad_value_`, clips at a threshold thousands of times too
small). (b) A clip that no optimizer step follows before the gradients are cleared or added to by
the next backward (written after `optimizer.step()`, or before `loss.backward()`) changes gradients
nobody uses, so exploding gradients reach the optimizer unclipped. Neither raises. The analysis is
`gradlint.analysis.clipping`, on the shared loop graphs; (a) offers an unsafe fix that inserts
`scaler.unscale_(optimizer)` before the clip.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

from gradlint.findings import Finding
from gradlint.rules import Needs, Rule

if TYPE_CHECKING:  # pragma: no cover - types only; the analysis is imported by `check`
    import libcst as cst

    from gradlint.analysis import Context
    from gradlint.analysis.clipping import ClipProblem

# Text a file must contain for the rule to possibly fire: clip_grad_norm_, clip_grad_value_,
# clip_grads_with_norm_, timm's dispatch_clip_grad and Lightning's clip_gradients all contain it.
NEEDS_WORDS = ("clip_grad",)
_CLIP_NAMES = ("clip_grad_norm_", "clip_grad_value_", "clip_grad_norm", "clip_grad_value", "clip_grads_with_norm_",
               "dispatch_clip_grad", "clip_gradients")


def check(ctx: Context) -> Iterable[Finding]:
    """One error per clip that cannot work, on the clip (or its helper's call in the loop)."""
    from gradlint.analysis.clipping import SCALED_CLIP, clip_problems

    for problem in clip_problems(ctx):
        if problem.reason == SCALED_CLIP:
            message = _scaled_message(ctx, problem)
        else:
            message = _unused_message(ctx, problem)
        yield ctx.finding(RULE.code, problem.node, message, problem.fix)


def _scaled_message(ctx: Context, problem: ClipProblem) -> str:
    assert problem.scaled is not None
    scaler = problem.scaler or problem.scaled.target or "scaler"
    line = ctx.position(problem.scaled.local_node()).start.line
    return (
        f"{_clipper(ctx, problem.node)} gradients still multiplied by the loss scale of `{scaler}` "
        f"(scaled backward on line {line}), so the threshold is off by the scale factor; "
        f"call `{problem.unscale}` before clipping"
    )


def _unused_message(ctx: Context, problem: ClipProblem) -> str:
    from gradlint.analysis.clipping import ADDED

    where = ""
    if problem.witness is not None:
        shown = problem.witness.local_node()
        where = f" `{_short(ctx, shown)}` (line {ctx.position(shown).start.line})"
    if problem.reason == ADDED:
        how = f"the next backward{where} adds to them before any step"
        fix = "clip after the backward and before `optimizer.step()`"
    else:
        how = f"they are cleared by{where} before any step" if where else "they are cleared before any step"
        fix = "clip after the backward and before `optimizer.step()`, not after the step"
    return f"{_clipper(ctx, problem.node)} gradients that no optimizer step uses: {how}; {fix}"


def _clipper(ctx: Context, node: cst.CSTNode) -> str:
    """The subject of the message: the clip call itself, or the call in the loop whose helper,
    or step closure (`opt.step(closure)`), runs the clip."""
    func = getattr(node, "func", None)
    name = getattr(getattr(func, "attr", func), "value", None)
    if name in _CLIP_NAMES:
        return f"`{_short(ctx, node)}` clips"
    return f"The clip that `{_short(ctx, node)}` runs clips"


def _short(ctx: Context, node: cst.CSTNode, limit: int = 60) -> str:
    text = re.sub(r"\s+", " ", ctx.code(node)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


RULE = Rule(
    code="GL004",
    name="clip-grad-misuse",
    summary="gradient clipping that cannot work: on GradScaler-scaled gradients before unscale_(), or on "
    "gradients no optimizer step uses",
    severity="error",
    default_on=True,
    fix="unsafe",  # (a): inserts scaler.unscale_(optimizer) before the clip
    tags=("correctness", "pytorch", "training-loop", "mixed-precision"),
    gitlab_category="Bug Risk",
    # a clip call, here or in a configured or imported helper
    needs=Needs(words=NEEDS_WORDS, names=_CLIP_NAMES, helpers=True),
    check=check,
)
