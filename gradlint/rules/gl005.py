"""GL005 gradients-cleared-before-step: a clear that wipes the gradients a backward produced before
the optimizer step that should use them.

`loss.backward(); optimizer.zero_grad(); optimizer.step()` steps on nothing (with set_to_none, the
default, the step skips every parameter); an unconditional `zero_grad()` between the backward and an
accumulation-gated step, or at the top of every iteration while the step runs every k-th, throws
away all but the last micro-batch. Nothing raises: the model does not train, or trains on a fraction
of the data. Reported on the clear (or the call, in the loop, of the helper that clears) when it runs
on every path from a backward to the next step of the optimizer holding those gradients with nothing
reading `.grad` in between; GAN loops, probes, loops without a step and correct accumulation have no
such path. The analysis is `gradlint.analysis.clearing`, on the shared loop graphs. No fix: where the
clear belongs depends on what the loop meant.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

from gradlint.findings import Finding
from gradlint.rules import Needs, Rule

if TYPE_CHECKING:  # pragma: no cover - types only; the analysis is imported by `check`
    import libcst as cst

    from gradlint.analysis import Context
    from gradlint.analysis.clearing import WipingClear

# Text a file must contain for the rule to possibly fire: zero_grad(), p.grad = None, p.grad.zero_().
NEEDS_WORDS = ("grad",)


def check(ctx: Context) -> Iterable[Finding]:
    """One error per clear that wipes gradients before their step."""
    from gradlint.analysis.clearing import wiping_clears

    for wipe in wiping_clears(ctx):
        yield ctx.finding(RULE.code, wipe.node, _message(ctx, wipe))


def _message(ctx: Context, wipe: WipingClear) -> str:
    back = wipe.backward.local_node()
    step = wipe.step.local_node()
    back_line = ctx.position(back).start.line
    step_line = ctx.position(step).start.line
    what = f"`{_short(ctx, wipe.node)}`"
    if wipe.gate is not None:
        return (
            f"{what} runs in the same iterations as `{_short(ctx, step)}` (line {step_line}), under the "
            f"same test `{_short(ctx, wipe.gate.test)}`, but before `{_short(ctx, back)}` (line {back_line}): "
            f"it wipes what the backwards of the iterations in between accumulated, so each step sees one "
            f"micro-batch; clear right after the step, inside its `if`"
        )
    if wipe.node is not wipe.clear.node:
        what += " clears gradients and"
    if wipe.partly:
        consequence = (
            f"wipes what `{_short(ctx, back)}` (line {back_line}) accumulated before "
            f"`{_short(ctx, step)}` (line {step_line}) uses it, so each step sees only the last batches"
        )
    else:
        consequence = (
            f"wipes the gradients of `{_short(ctx, back)}` (line {back_line}) before "
            f"`{_short(ctx, step)}` (line {step_line}) uses them, so the step sees none"
        )
    how = "clear right after the step (or before the backward), inside the same accumulation gate"
    return f"{what} {consequence}; {how}"


def _short(ctx: Context, node: cst.CSTNode, limit: int = 60) -> str:
    text = re.sub(r"\s+", " ", ctx.code(node)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


RULE = Rule(
    code="GL005",
    name="gradients-cleared-before-step",
    summary="a clear (zero_grad, p.grad = None) that wipes a backward's gradients before the optimizer "
    "step that should use them",
    severity="error",
    default_on=True,
    tags=("correctness", "pytorch", "training-loop"),
    gitlab_category="Bug Risk",
    # zero_grad(), p.grad = None / .zero_(), or a configured or imported clearing helper
    # (and a backward: its name, or a configured or imported helper running one)
    needs=Needs(words=NEEDS_WORDS, names=("backward", "manual_backward"), helpers=True),
    check=check,
)
