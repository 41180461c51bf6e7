"""GL006 loss-history-keeps-graph: a tensor with history kept past its training iteration.

`running_loss += loss`, `losses.append(loss)`, `history[k] = loss` or `total = total + loss` in a
training loop store the loss (or an output, a scaled copy) *with its autograd graph*: every
iteration's activations stay alive as long as the accumulator does, and memory grows until the job
dies hours in (PyTorch's FAQ, "My model reports cuda runtime error(2): out of memory"). Store
`loss.item()` (a number) or `loss.detach()` instead. Not reported: `.item()`/`.detach()`/`float()`/
`.tolist()` forms, sums within one iteration before one backward (truncated BPTT, multi-task),
code under `torch.no_grad()`, `self.log(...)` and metric objects, and accumulators a backward walks
later on purpose. The facts live in `gradlint.analysis.lifetimes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Tuple

from gradlint.findings import Edit, Finding, Fix
from gradlint.rules import Needs, Rule

if TYPE_CHECKING:  # pragma: no cover - types only; the analysis is imported by `check`
    from gradlint.analysis import Context
    from gradlint.analysis.lifetimes import KeptHistory

# A file must contain one of these words for the rule to possibly fire.
NEEDS_WORDS = ("backward",)


def check(ctx: Context) -> Iterable[Finding]:
    """One warning per store that keeps an iteration's graph alive past the iteration."""
    from gradlint.analysis.lifetimes import kept_histories

    if not ctx.lifetime_survey.loop_backward:
        return  # no loop body runs a backward: no scope need be built
    analysis = ctx.lifetime_analysis
    if analysis is None:
        return
    for kept in kept_histories(analysis):
        value = _short(ctx.code(kept.value))
        where = {
            "accumulate": f"accumulates `{value}` into `{kept.holder}`",
            "append": f"appends `{value}` to `{kept.holder}`",
            "store": f"stores `{value}` in `{kept.holder}`",
        }[kept.form]
        message = (
            f"this {where}, which outlives the iteration: `{value}` carries its autograd graph, so every "
            f"iteration's graph stays alive with it; store {_detached(value, kept.scalar)} instead"
        )
        yield ctx.finding(RULE.code, kept.statement, message, fix=_fix(ctx, kept), related=[kept.backward])


def _detached(value: str, scalar: bool) -> str:
    simple = value.replace(".", "").replace("_", "").isalnum()
    shown = value if simple else f"({value})"
    return f"`{shown}.item()` (or `{shown}.detach()`)" if scalar else f"`{shown}.detach()`"


def _fix(ctx: Context, kept: KeptHistory) -> Fix:
    """`.item()` after the stored value: safe when it is a scalar loss and the holder is only shown
    (printed, logged, formatted). Otherwise unsafe: `.item()` for a scalar loss (the holder then
    holds a number, which later tensor uses may not expect), `.detach()` for anything else."""
    end = ctx.position(kept.value).end
    offset = ctx.offset(end.line, end.column)
    text = ctx.code(kept.value)
    simple = text.replace(".", "").replace("_", "").isalnum()
    method = ".item()" if kept.scalar else ".detach()"
    edits: Tuple[Edit, ...] = (Edit(offset, offset, method),)
    if not simple:
        start = ctx.position(kept.value).start
        edits = (Edit(ctx.offset(start.line, start.column), ctx.offset(start.line, start.column), "("),
                 Edit(offset, offset, ")" + method))
    shown = text if simple else f"({' '.join(text.split())})"
    return Fix(f"Store `{shown}{method}`", edits, "safe" if kept.item_fix else "unsafe")


def _short(code: str, limit: int = 40) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."


RULE = Rule(
    code="GL006",
    name="loss-history-keeps-graph",
    summary="a loss or output with its graph stored in something that outlives the training iteration",
    severity="warning",  # memory grows; results stay right until it runs out
    default_on=True,
    fix="safe",  # `.item()` where only shown; other fixes are offered as unsafe
    tags=("performance", "memory", "pytorch", "autograd"),
    gitlab_category="Performance",
    needs=Needs(words=NEEDS_WORDS, names=("backward", "manual_backward"), helpers=True),
    check=check,
)
