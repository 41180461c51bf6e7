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

from typing import Iterable

from gradlint.analysis import Context
from gradlint.analysis.lifetimes import KeptHistory, build_analysis, kept_histories
from gradlint.findings import Edit, Finding, Fix

# A file must contain one of these words for the rule to possibly fire.
NEEDS_WORDS = ("backward",)


def check(ctx: Context) -> Iterable[Finding]:
    """One warning per store that keeps an iteration's graph alive past the iteration."""
    analysis = ctx.fact(
        "lifetimes.analysis", lambda: build_analysis(ctx.module, ctx.imports, ctx.options.backward_functions)
    )
    if analysis is None:
        return
    for kept in ctx.fact("lifetimes.kept_histories", lambda: kept_histories(analysis)):
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
        yield ctx.finding("GL006", kept.statement, message, fix=_fix(ctx, kept))


def _detached(value: str, scalar: bool) -> str:
    simple = value.replace(".", "").replace("_", "").isalnum()
    shown = value if simple else f"({value})"
    return f"`{shown}.item()` (or `{shown}.detach()`)" if scalar else f"`{shown}.detach()`"


def _fix(ctx: Context, kept: KeptHistory):
    """`.item()` after the stored name, when that is safe (a scalar loss, the holder only shown).
    Elsewhere the right form (`.item()` or `.detach()`) depends on how the holder is used later,
    so no fix is offered."""
    if not kept.item_fix:
        return None
    end = ctx.position(kept.value).end
    offset = ctx.offset(end.line, end.column)
    return Fix(f"Store `{ctx.code(kept.value)}.item()`", (Edit(offset, offset, ".item()"),))


def _short(code: str, limit: int = 40) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."
