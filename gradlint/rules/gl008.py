"""GL008 carried-graph-state: a backward over state the previous iteration's graph produced.

A recurrent hidden state (or any output fed back into the next forward) that is carried from one
iteration into the next without `.detach()` links every iteration's graph to the previous one: the
second backward walks into the first graph, whose buffers it already freed, and raises "Trying to
backward through the graph a second time". The usual workaround, `retain_graph=True`, makes the
error go away and the graph grow without bound (memory and time per step rise until the job dies).
Detach the state once per iteration (`hidden = repackage_hidden(hidden)`, `h = h.detach()`).
Reported as an error, or as a warning when the backward already passes `retain_graph=True`. The
facts live in `gradlint.analysis.lifetimes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from gradlint.findings import Finding
from gradlint.rules import Needs, Rule

if TYPE_CHECKING:  # pragma: no cover - types only; the analysis is imported by `check`
    from gradlint.analysis import Context

# A file must contain one of these words for the rule to possibly fire.
NEEDS_WORDS = ("backward",)


def check(ctx: Context) -> Iterable[Finding]:
    """One finding per backward whose root reads a state carried, undetached, from the last iteration."""
    from gradlint.analysis.carried import carried_states

    if not ctx.lifetime_survey.loop_backward:
        return  # no loop body runs a backward: no scope need be built
    analysis = ctx.lifetime_analysis
    if analysis is None:
        return
    for carried in carried_states(analysis, ctx.module):
        backward = _short(ctx.code(carried.backward.node))
        producer = _short(ctx.code(carried.producer))
        if carried.state.startswith("<state:"):
            owner = carried.state[len("<state:"):-1]
            message = (
                f"`{backward}` walks the state `{owner}` keeps on `self` between calls (`{producer}`), which "
                f"carries the previous iteration's graph: "
                + ("retain_graph=True hides the second-backward error while the graph grows every iteration; "
                   if carried.retained else "the second backward raises \"Trying to backward through the graph "
                   "a second time\"; ")
                + "detach it in `forward` (or reset it) once per iteration"
            )
            yield ctx.finding(RULE.code, carried.backward.node, message,
                              severity="warning" if carried.retained else None)
            continue
        if carried.retained:
            message = (
                f"`{backward}` walks `{carried.state}`, which `{producer}` carries from the previous iteration "
                f"with its graph: retain_graph=True hides the second-backward error while the graph grows every "
                f"iteration; detach it once per iteration ({_detaching(carried.state)}) and drop retain_graph"
            )
            yield ctx.finding(RULE.code, carried.backward.node, message, severity="warning")
        else:
            message = (
                f"`{backward}` walks `{carried.state}`, which `{producer}` carries from the previous iteration "
                f"with its graph: the second backward raises \"Trying to backward through the graph a second "
                f"time\"; detach it once per iteration ({_detaching(carried.state)})"
            )
            yield ctx.finding(RULE.code, carried.backward.node, message)


def _detaching(state: str) -> str:
    """How to detach `state`: a tensor, or a tuple of them (an LSTM's `(h, c)`, which has no
    `.detach()`)."""
    return f"`{state} = {state}.detach()`, or `tuple(t.detach() for t in {state})` for a tuple such as an LSTM's (h, c)"


def _short(code: str, limit: int = 50) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."


RULE = Rule(
    code="GL008",
    name="carried-graph-state",
    summary="a backward through state the previous iteration's graph produced, never detached",
    severity="error",  # a warning for a finding whose backward passes retain_graph=True
    default_on=True,
    tags=("correctness", "memory", "pytorch", "autograd"),
    gitlab_category="Bug Risk",
    needs=Needs(words=NEEDS_WORDS, names=("backward", "manual_backward"), helpers=True),
    check=check,
)
