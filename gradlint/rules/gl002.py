"""GL002 unnecessary-retain-graph: `retain_graph=True` where no later backward can walk the graph.

A retained graph keeps every activation its backward saved until the root tensor is collected;
when nothing walks it again that is memory (often gigabytes) held for nothing, and a common sign of
a `retain_graph=True` added to silence an error that had another cause. The proof lives in
`gradlint.analysis.graphs`; the fix removes the argument.
"""

from __future__ import annotations

from typing import Iterable

import libcst as cst

from gradlint.analysis import Context
from gradlint.analysis.graphs import Verdict, unnecessary_retains
from gradlint.findings import Edit, Finding, Fix


def check(ctx: Context) -> Iterable[Finding]:
    """One warning per `retain_graph=True` proven unnecessary, with a fix that removes it."""
    # Project files searched for the callers of this file's functions: its GL002 findings depend
    # on them as well (for a cache of findings).
    consulted = ctx.fact("graphs.consulted_files", set)
    verdicts = ctx.fact(
        "graphs.unnecessary_retains",
        lambda: unnecessary_retains(
            ctx.module,
            ctx.imports,
            ctx.options.backward_functions,
            ctx.path,
            ctx.options.project_root,
            consulted,
        ),
    )
    for verdict in verdicts:
        call = verdict.call.node
        shown = _shown_call(ctx, verdict)
        message = (
            f"`{shown}` keeps the graph of `{verdict.root}` alive, but no later backward uses it: "
            f"drop `retain_graph=True` to free it"
        )
        yield ctx.finding("GL002", call, message, fix=_removal(ctx, call, verdict.retain_arg))


def _shown_call(ctx: Context, verdict: Verdict) -> str:
    """`loss.backward(retain_graph=True)`, shortened when the call is long."""
    text = " ".join(ctx.code(verdict.call.node).split())
    return text if len(text) <= 70 else text[:67] + "..."


def _removal(ctx: Context, call: cst.Call, arg: cst.Arg) -> Fix:
    """Delete the argument and the comma that separates it from its neighbour."""
    args = list(call.args)
    index = next(i for i, a in enumerate(args) if a is arg)
    here = ctx.position(arg)
    if arg.keyword is None and any(a.keyword is None and not a.star for a in args[index + 1 :]):
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
