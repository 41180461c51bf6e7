"""GL001 missing-zero-grad: a backward that adds to gradients an optimizer step already applied.

For every loop and every optimizer stepped in it, the rule asks the control-flow layer for a path
step(O) -> (no clear of O) -> backward -> (no clear of O) -> step(O), around the back edge if need be.
Each backward on such a path is reported once, on the backward call (or on the call, in the loop, of
the helper that runs it). GAN loops, gradient accumulation and LBFGS closures have no such path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

from gradlint.findings import Finding
from gradlint.rules import Needs, Rule

if TYPE_CHECKING:  # pragma: no cover - types only; the analysis is imported by `check`
    import libcst as cst

    from gradlint.analysis import Context
    from gradlint.analysis.facts import Event


def _calls_within(node: cst.CSTNode) -> set:
    """ids of the calls inside `node` (a read-only walk: visitors rebuild the tree)."""
    import libcst as cst

    from gradlint.analysis.tree import walk

    return {id(call) for call in walk(node) if type(call) is cst.Call}


def _report_node(event: Event, inside: set) -> Optional[cst.CSTNode]:
    """Where a backward is reported in this loop: itself if written in the loop, else the
    innermost helper call in the loop that leads to it."""
    for node, _local in reversed(event.chain):
        if id(node) in inside:
            return node
    return None


def _short(ctx: Context, node: cst.CSTNode, limit: int = 60) -> str:
    text = re.sub(r"\s+", " ", ctx.code(node)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check(ctx: Context) -> Iterable[Finding]:
    """One error per backward (or helper call running one, in the loop) on a stale path."""
    from gradlint.analysis.facts import (
        ALL,
        BACKWARD,
        CLEAR,
        OPTIMIZER,
        STEP,
        Analyzer,
        Scope,
        implicit_loops,
        iter_loops,
    )
    from gradlint.analysis.flow import TooLarge, build_body_graph, build_loop_graph, stale_path
    from gradlint.analysis.project import Project

    facts = ctx.training_facts
    local = Analyzer(facts, ctx.options, None)
    project = Project(ctx.path, ctx.options.project_root)
    # underlying backward node id -> (report node, step event, optimizer, cleared somewhere?)
    direct: Dict[int, Tuple[cst.CSTNode, Event, str, bool]] = {}
    via_helper: Dict[int, Tuple[cst.CSTNode, Event, str, bool, int]] = {}
    gated_out: set = set()  # loops that cannot step or run a backward (nor can loops inside them)
    # the loops written in the file, then Lightning training_steps with manual optimization
    # (Lightning's own loop calls them once per batch)
    candidates: list = [(loop, cls, func, build_loop_graph) for loop, cls, func in iter_loops(facts)]
    candidates += [(step, cls, step, build_body_graph) for step, cls in implicit_loops(facts)]
    for loop, cls, func, build in candidates:
        scope = Scope(facts=facts, root=facts, cls=cls, func=func)
        parent = facts.loop_parent.get(id(loop))
        if parent is not None and id(parent) in gated_out:
            gated_out.add(id(loop))
            continue
        try:
            if not local.may_step_or_backward(loop, scope):
                gated_out.add(id(loop))
                continue
            local.wants_project = False
            graph = build(loop, local, scope)
            events = list(graph.events())
            if not any(e.kind in (STEP, BACKWARD) for e in events):
                continue  # no step and no backward here, even through this module's helpers
            if local.wants_project:
                # helpers imported from the project's other modules: read them for this loop only
                graph = build(loop, Analyzer(facts, ctx.options, project), scope)
                events = list(graph.events())
        except (TooLarge, RecursionError):
            continue
        optimizers = sorted({e.target for e in events if e.kind == STEP})
        backwards = [e for e in events if e.kind == BACKWARD]
        if not optimizers or not backwards:
            continue
        # texts that name distinct optimizers: stepped here, or built as optimizers in this module
        known = frozenset(optimizers) | frozenset(
            e.target for e in events if e.kind == CLEAR and facts.kinds.get(e.target) == OPTIMIZER
        )
        inside = _calls_within(loop)
        groups: Dict[int, List[Event]] = {}
        reports: Dict[int, cst.CSTNode] = {}
        for event in backwards:
            node = _report_node(event, inside)
            if node is not None:
                groups.setdefault(id(node), []).append(event)
                reports[id(node)] = node
        for key, group in groups.items():
            report = reports[key]
            underlying = id(group[0].node)
            if underlying in direct or key in via_helper:
                continue
            members = {id(e) for e in group}
            for optimizer in optimizers:
                step = stale_path(graph, optimizer, lambda e, members=members: id(e) in members, known)
                if step is None:
                    continue
                cleared = any(
                    e.kind == CLEAR and (e.target in (optimizer, ALL) or optimizer == ALL or e.target not in known)
                    for e in events
                )
                if report is group[0].node:
                    direct[underlying] = (report, step, optimizer, cleared)
                else:
                    via_helper[key] = (report, step, optimizer, cleared, underlying)
                break
    findings = [_finding(ctx, *entry, True) for entry in direct.values()]
    for report, step, optimizer, cleared, underlying in via_helper.values():
        if underlying not in direct:
            findings.append(_finding(ctx, report, step, optimizer, cleared, False))
    return findings


def _finding(ctx: Context, report: cst.CSTNode, step: Event, optimizer: str, cleared: bool,
             is_backward: bool) -> Finding:
    from gradlint.analysis.facts import ALL

    step_node = step.local_node()
    step_line = ctx.position(step_node).start.line
    backward = _short(ctx, report)
    what = f"`{backward}` adds" if is_backward else f"`{backward}` runs a backward that adds"
    name = "the optimizer" if optimizer == ALL else f"`{optimizer}`"
    how = "are never cleared between steps" if not cleared else "are not cleared on every path between steps"
    clear = "optimizer.zero_grad()" if optimizer == ALL else f"{optimizer}.zero_grad()"
    message = (
        f"{what} to gradients that `{_short(ctx, step_node)}` (line {step_line}) already applied: "
        f"{name}'s gradients {how}; call `{clear}` before the backward or after the step"
    )
    return ctx.finding(RULE.code, report, message)


# ------------------------------------------------------------------------------ gradlint run


def judge(sites: list, cwd: str) -> Tuple[str, str]:
    """Runtime verdict of a finding from the backward sites it covers: confirmed when a step used
    gradients that still held a backward from before that optimizer's previous step."""
    from gradlint.runtime.verdicts import CONFIRMED, REFUTED, UNEXERCISED, plural

    sites = [s for s in sites if s.kind == "backward"]
    stale = sum(s.stale_steps for s in sites)
    steps = sum(s.steps for s in sites)
    if stale:
        params = max(s.stale_params for s in sites)
        names = sorted({n for s in sites for n in s.stale_optimizers})
        return CONFIRMED, (
            f"{plural(stale, 'optimizer step')} ({', '.join(names)}) used gradients of "
            f"{plural(params, 'parameter')} that still held contributions from a backward made before "
            f"that optimizer's previous step"
        )
    calls = sum(s.calls for s in sites)
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


def observe(site, cwd: str, covered: bool) -> List[Tuple[str, str, Optional[str]]]:
    """Runtime-only findings at one backward site: stale steps where no static GL001 points
    (`covered`), and, always, leaf tensors that accumulate gradients no optimizer clears (a note)."""
    from gradlint.runtime.verdicts import plural

    out: List[Tuple[str, str, Optional[str]]] = []
    if site.stale_steps and not covered:
        _, evidence = judge([site], cwd)
        out.append((
            "this backward accumulates onto gradients an optimizer step already used: clear them "
            "(optimizer.zero_grad()) before the next backward",
            evidence, None))
    if site.loose_leaves > 0:
        out.append((
            f"{plural(site.loose_leaves, 'leaf tensor')} in no optimizer accumulate gradients "
            "from this backward and are never cleared (set requires_grad=False, or clear them)",
            f"{plural(site.loose_leaves, 'leaf tensor')} carried gradients across backward calls "
            "without a clear and no optimizer holds them",
            "note"))
    return out


_BACKWARD_NAMES = ("backward", "manual_backward")

RULE = Rule(
    code="GL001",
    name="missing-zero-grad",
    summary="a training loop that steps an optimizer but lets the next backward accumulate onto "
    "gradients that step already used",
    severity="error",
    default_on=True,
    tags=("correctness", "pytorch", "training-loop"),
    gitlab_category="Bug Risk",
    # a backward call (`.backward(`, `torch.autograd.backward`, `accelerator.backward`,
    # `manual_backward`), here or in a configured or imported helper
    needs=Needs(words=("backward",), names=_BACKWARD_NAMES, helpers=True),
    check=check,
    judge=judge,
    observe=observe,
)
