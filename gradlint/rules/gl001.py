"""GL001 missing-zero-grad: a backward that adds to gradients an optimizer step already applied.

For every loop and every optimizer stepped in it, the rule asks the control-flow layer for a path
step(O) -> (no clear of O) -> backward -> (no clear of O) -> step(O), around the back edge if need be.
Each backward on such a path is reported once, on the backward call (or on the call, in the loop, of
the helper that runs it). GAN loops, gradient accumulation and LBFGS closures have no such path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple

from gradlint.findings import Finding
from gradlint.rules import Needs, Rule

if TYPE_CHECKING:  # pragma: no cover - types only; the analysis is imported by `check`

    from gradlint.analysis import Context


def check(ctx: Context) -> Iterable[Finding]:
    """One error per backward (or helper call running one, in the loop) on a stale path; an unsafe
    fix inserts the missing clear where one place is right (`gradlint.rules.gl001_fix`)."""
    from gradlint.rules.gl001_check import check as run

    return run(ctx, RULE.code)


# ------------------------------------------------------------------------------ gradlint run


def judge(sites: list, cwd: str, finding: Any = None, obs: Any = None) -> Tuple[str, str]:
    """Runtime verdict of a finding from the backward sites it covers: confirmed when a step used
    gradients that still held a backward from before that optimizer's previous step."""
    from gradlint.runtime.events import UNSURE_CARRY
    from gradlint.runtime.judges import CONFIRMED, REFUTED, UNEXERCISED, plural
    from gradlint.runtime.verdicts import manual_stale_evidence

    sites = [s for s in sites if s.kind == "backward"]
    stale = sum(s.stale_steps for s in sites)
    steps = sum(s.steps for s in sites)
    manual = manual_stale_evidence(sites)  # a hand-written update re-applied stale gradients
    if manual is not None and not stale:
        return CONFIRMED, manual
    if stale:
        params = max(s.stale_params for s in sites)
        names = sorted({n for s in sites for n in s.stale_optimizers})
        return CONFIRMED, (
            f"{plural(stale, 'optimizer step')} ({', '.join(names)}) used gradients of "
            f"{plural(params, 'parameter')} that still held contributions from a backward made before "
            f"that optimizer's previous step"
        )
    calls = sum(s.calls for s in sites)
    unsure = sum(s.count(UNSURE_CARRY) for s in sites)
    if unsure:  # gradients neither cleared in a way the tracer sees nor verifiably carried over
        return UNEXERCISED, (
            f"the backward ran {plural(calls, 'time')}, followed by {plural(steps, 'optimizer step')}; "
            f"{plural(unsure, 'step')} used gradients that no clear the tracer saw had reset and whose "
            f"content could not show a carry-over (a clear through .data, or all-zero gradients)"
        )
    if steps >= 2:
        return REFUTED, (
            f"the backward ran {plural(calls, 'time')}, followed by {plural(steps, 'optimizer step')}; "
            f"every step used freshly cleared gradients"
        )
    if calls:
        return UNEXERCISED, (
            f"the backward ran {plural(calls, 'time')} but only {plural(steps, 'optimizer step')} "
            f"followed; at least 2 are needed to tell"
        )
    return UNEXERCISED, "this code did not run a backward"


def observe(site, cwd: str, covered: bool, peers: Optional[list] = None,
            ran: Optional[set] = None) -> List[Tuple[str, str, Optional[str]]]:
    """Runtime-only findings at one backward site no static GL001 points to (`covered`): an
    optimizer step, or a hand-written update, that used gradients an earlier step already used.
    (Leaves that no optimizer holds and that only accumulate, as for saliency maps, are a note in
    the summary, not a finding: with no step there is no GL001.)"""
    from gradlint.runtime.verdicts import manual_stale_evidence

    from gradlint.runtime.events import STALE_UPSTREAM

    if covered:
        return []
    out: List[Tuple[str, str, Optional[str]]] = []
    # Reported where the stale gradients were last added to before a step used them: a backward
    # that is only ever followed by another one accumulating onto the same stale gradients (a
    # GAN's generator backward through a discriminator its loop never clears) is the same missing
    # clear, reported (or confirmed) at that later backward.
    if site.stale_steps > site.count(STALE_UPSTREAM):
        _, evidence = judge([site], cwd)
        names = " and ".join(site.stale_optimizers) or "an optimizer"
        out.append((
            f"this backward accumulates onto gradients that a step of {names} already used: clear "
            f"that optimizer's gradients (its zero_grad()) after its step or before this backward",
            evidence, None))
    elif manual_stale_evidence([site]) is not None:
        out.append((
            "this backward accumulates onto gradients a manual update already applied: clear them "
            "(p.grad = None) after each update",
            manual_stale_evidence([site]) or "", None))
    return out


_BACKWARD_NAMES = ("backward", "manual_backward")

RULE = Rule(
    code="GL001",
    name="missing-zero-grad",
    summary="a training loop that steps an optimizer but lets the next backward accumulate onto "
    "gradients that step already used",
    severity="error",
    default_on=True,
    fix="unsafe",  # inserting a clear changes what the program computes: review it
    tags=("correctness", "pytorch", "training-loop"),
    gitlab_category="Bug Risk",
    # a backward call (`.backward(`, `torch.autograd.backward`, `accelerator.backward`,
    # `manual_backward`), here or in a configured or imported helper
    needs=Needs(words=("backward",), names=_BACKWARD_NAMES, helpers=True),
    check=check,
    judge=judge,
    observe=observe,
)
