"""GL002 unnecessary-retain-graph: `retain_graph=True` where no later backward can walk the graph.

A retained graph keeps every activation its backward saved until the root tensor is collected;
when nothing walks it again that is memory (often gigabytes) held for nothing, and a common sign of
a `retain_graph=True` added to silence an error that had another cause. The proof lives in
`gradlint.analysis.graphs`; the fix removes the argument.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple

from gradlint.findings import Edit, Finding, Fix
from gradlint.rules import Needs, Rule

if TYPE_CHECKING:  # pragma: no cover - types only; the analysis is imported by `check`
    import libcst as cst

    from gradlint.analysis import Context
    from gradlint.analysis.graphs import Verdict


def check(ctx: Context) -> Iterable[Finding]:
    """One warning per `retain_graph=True` proven unnecessary, with a fix that removes it."""
    for verdict in ctx.retain_verdicts:
        call = verdict.call.node
        shown = _shown_call(ctx, verdict)
        message = (
            f"`{shown}` keeps the graph of `{verdict.root}` alive, but no later backward uses it: "
            f"drop `retain_graph=True` to free it"
        )
        yield ctx.finding(RULE.code, call, message, fix=_removal(ctx, call, verdict.retain_arg))


def _shown_call(ctx: Context, verdict: Verdict) -> str:
    """`loss.backward(retain_graph=True)`, shortened when the call is long."""
    text = " ".join(ctx.code(verdict.call.node).split())
    return text if len(text) <= 70 else text[:67] + "..."


def _removal(ctx: Context, call: cst.Call, arg: cst.Arg) -> Fix:
    """Delete the argument and the comma that separates it from its neighbour. An argument on
    lines of its own goes with its lines, keeping a trailing comment (and the layout of the
    other arguments and of the closing parenthesis)."""
    args = list(call.args)
    index = next(i for i, a in enumerate(args) if a is arg)
    here = ctx.position(arg)
    positional_after = any(a.keyword is None and not a.star for a in args[index + 1 :])
    if not (arg.keyword is None and positional_after):
        own = _own_lines(ctx, arg, last=index + 1 == len(args))
        if own is not None:
            return Fix("Remove `retain_graph=True`", (Edit(own[0], own[1], ""),))
    if arg.keyword is None and positional_after:
        # Positional, with positional arguments after it: removing it would shift them into
        # its place, so say False instead.
        value = ctx.position(arg.value)
        start = ctx.offset(value.start.line, value.start.column)
        end = ctx.offset(value.end.line, value.end.column)
        return Fix("Replace `retain_graph=True` with `False`", (Edit(start, end, "False"),))
    if index + 1 < len(args):
        # Not the last: remove it up to the start of the next argument (its comma and spacing).
        start = ctx.offset(here.start.line, here.start.column)
        following = ctx.position(args[index + 1])
        end = ctx.offset(following.start.line, following.start.column)
    elif index > 0:
        # The last of several: remove from the end of the previous argument.
        previous = ctx.position(args[index - 1])
        start = ctx.offset(previous.end.line, previous.end.column)
        end = ctx.offset(here.end.line, here.end.column)  # a trailing comma after it stays
    else:
        # The only argument: empty the parentheses.
        start = ctx.offset(here.start.line, here.start.column)
        whole = ctx.position(call)
        end = ctx.offset(whole.end.line, whole.end.column) - 1  # the closing parenthesis
    return Fix("Remove `retain_graph=True`", (Edit(start, end, ""),))


_AFTER_ARGUMENT = re.compile(r"[ \t\f]*(?P<comma>,)?[ \t\f]*(?P<comment>#[^\r\n]*)?(?:\r\n|\r|\n)")


def _own_lines(ctx: Context, arg: cst.Arg, last: bool) -> Optional[Tuple[int, int]]:
    """The span to delete when `arg` stands on lines of its own (only indentation before it,
    only its comma and a comment after it): the whole lines, or, when a comment follows, the
    argument and its comma up to the comment (the comment stays where it was). None when the
    argument shares a line with other code."""
    text = ctx.module.code
    first = arg.keyword if arg.keyword is not None else arg.value
    start_pos = ctx.position(first).start
    end_pos = ctx.position(arg.value).end
    start = ctx.offset(start_pos.line, start_pos.column)
    end = ctx.offset(end_pos.line, end_pos.column)
    line_start = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1
    if text[line_start:start].strip(" \t\f") or arg.star:
        return None
    after = _AFTER_ARGUMENT.match(text, end)
    if after is None or (after.group("comma") is None and not last):
        return None
    if after.group("comment"):
        return start, after.start("comment")
    return line_start, after.end()


# ------------------------------------------------------------------------------ gradlint run


def judge(sites: list, cwd: str, finding: Any = None, obs: Any = None) -> Tuple[str, str]:
    """Runtime verdict: confirmed when a graph retained here was never run again, refuted when a
    later backward ran it."""
    from gradlint.runtime.judges import CONFIRMED, REFUTED, UNEXERCISED, plural
    from gradlint.runtime.verdicts import where

    retained = sum(s.retained for s in sites)
    reused = [s for s in sites if s.retained_reused]
    if reused:
        by = next((s.reused_by for s in reused if s.reused_by), None)
        return REFUTED, (
            f"a graph retained here was run again by a later backward at {where(by, cwd)}: "
            f"the retain is needed"
        )
    if retained:
        watched = sum(s.retained_watched for s in sites)
        counted = plural(retained, "graph") + (f" ({watched} watched)" if watched < retained else "")
        return CONFIRMED, (
            f"{counted} retained here and no later backward ran any of "
            f"{'its' if retained == 1 else 'their'} nodes"
        )
    if any(s.calls for s in sites):
        return UNEXERCISED, "the backward ran but never with a retained graph"
    return UNEXERCISED, "this code did not run a backward"


def observe(site, cwd: str, covered: bool, peers: Optional[list] = None,
            ran: Optional[set] = None) -> List[Tuple[str, str, Optional[str]]]:
    """A retained graph nothing ran again, at a site no static GL002 points to. `retain_graph` is
    written once per line: when a graph retained on another call path through the same line
    (`peers`: a helper called from two places) was run again, the line needs it. When a backward
    written in the same function never ran (`ran`: where traced backwards ran), this run did not
    take the path that may need the graph (`if args.aux: aux.backward()`): nothing is said."""
    from gradlint.runtime.untaken import untaken_backward

    peers = peers or [site]
    if covered or not site.retained or any(s.retained_reused for s in peers):
        return []
    if ran is not None and untaken_backward(site.where[0], site.where[1], ran) is not None:
        return []
    _, evidence = judge(peers, cwd)
    return [("`retain_graph=True` keeps a graph that no later backward uses; drop it to free the "
             "saved tensors", evidence, None)]


RULE = Rule(
    code="GL002",
    name="unnecessary-retain-graph",
    summary="retain_graph=True where no later backward can traverse the retained graph",
    severity="warning",  # wastes memory; results stay right
    default_on=True,
    fix="safe",
    tags=("performance", "memory", "pytorch"),
    gitlab_category="Performance",
    # a backward call, or `torch.autograd.grad(..., retain_graph=True)`
    needs=Needs(words=("backward", "retain_graph"), names=("backward", "manual_backward"),
                autograd_names=("grad",), helpers=True),
    check=check,
    judge=judge,
    observe=observe,
)
