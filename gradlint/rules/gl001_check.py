"""The check of GL001 missing-zero-grad (declared in `gradlint.rules.gl001`, which imports this
module only when the rule runs, so the rule table loads without LibCST).

For every loop and every optimizer stepped in it, the rule asks the control-flow layer for a path
step(O) -> (no clear of O) -> backward -> (no clear of O) -> step(O), around the back edge if need be.
Each backward on such a path is reported once, on the backward call (or on the call, in the loop, of
the helper that runs it). GAN loops, gradient accumulation and LBFGS closures have no such path.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.comprehension_loops import (
    build_comprehension_graph,
    comprehension_contains,
    comprehension_loops,
    per_item_names,
)
from gradlint.analysis.effects import Analyzer
from gradlint.analysis.events import ALL, BACKWARD, CLEAR, STEP, Event, Scope
from gradlint.analysis.flow import LoopGraph, TooLarge, build_loop_graph, candidate_loops, stale_path
from gradlint.analysis.helper_calls import family
from gradlint.analysis.manual_updates import PARAMS, updated_by_call, updated_by_statement
from gradlint.analysis.object_kinds import OPTIMIZER
from gradlint.analysis.project import Project
from gradlint.analysis.reads import bound_names
from gradlint.analysis.tree import walk
from gradlint.findings import Finding, Fix
from gradlint.rules.gl001_fix import build_fix

# One finding before it is described: (report node, step event, optimizer, cleared somewhere?,
# period key of the `% k` gates that line up only for k > 1, fix, backward in a helper's own loop?)
_Entry = Tuple[cst.CSTNode, Event, str, bool, Optional[str], Optional[Fix], bool]
# A loop to analyse: (loop or per-batch function, its class, its def, the graph builder for it)
_Candidate = Tuple[cst.CSTNode, Optional[str], Optional[cst.FunctionDef], Callable[[Any, Analyzer, Scope], LoopGraph]]


def _calls_within(node: cst.CSTNode) -> set:
    """ids of the calls inside `node` (a read-only walk: visitors rebuild the tree)."""
    return {id(call) for call in walk(node) if type(call) is cst.Call}


def _report_node(event: Event, inside: set, stepping: set):
    """Where a backward is reported in this loop: itself if written in the loop, or in a method of
    the loop's own class that the loop reaches through `self.` calls only and that does not step
    (a trainer's `train()` -> `self.train_step()` -> `self.forward_backward()`: the backward is
    the piece that forgets the clear); else the innermost helper call in the loop that leads to it
    (`self.train_step()` when that method runs the whole step)."""
    if _through_own_methods(event, inside) and _chain_key(event) not in stepping:
        return event.node
    for node, _local in reversed(event.chain):
        if id(node) in inside:
            return node
    return None


def _chain_key(event: Event) -> tuple:
    """Identifies the helper invocation an event happens in (the call sites that lead there)."""
    return tuple(id(node) for node, _local in event.chain[:-1])


def _through_own_methods(event: Event, inside: set) -> bool:
    calls = event.chain[:-1]
    if not calls or id(calls[0][0]) not in inside or not all(local for _node, local in event.chain):
        return False
    for node, _local in calls:
        func = node.func if isinstance(node, cst.Call) else None
        if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self"):
            return False
    return True


def _short(ctx, node: cst.CSTNode, limit: int = 60) -> str:
    text = re.sub(r"\s+", " ", ctx.code(node)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check(ctx, code: str) -> Iterable[Finding]:
    facts = ctx.training_facts
    local = Analyzer(facts, ctx.options, None)
    project = Project(ctx.path, ctx.options.project_root)
    # underlying backward node id -> entry; report node id -> (entry, underlying backward node id)
    direct: Dict[int, _Entry] = {}
    via_helper: Dict[int, Tuple[_Entry, int]] = {}
    for loop, cls, _func, build, scope in _candidates(facts, local):
        try:
            local.wants_project = False
            local.ambiguous = False
            local.loop_class = cls
            graph = build(loop, local, scope)
            local.loop_class = None  # (the next candidate's gate runs before its class is known)
            if local.wants_project or local.ambiguous:
                # helpers imported from the project's other modules: read them for this loop only
                # (before judging the loop: unread, such a helper looks like a clear at best)
                analyzer = Analyzer(facts, ctx.options, project)
                analyzer.loop_class = cls
                graph = build(loop, analyzer, scope)
                if analyzer.ambiguous and cls is not None:
                    # `self.train_step()` differs between the classes this loop may run on
                    _per_receiver(ctx, facts, project, loop, cls, build, scope, direct, via_helper)
                    continue
            found = _entries(ctx, project, loop, graph, direct, via_helper)
        except (TooLarge, RecursionError):
            continue
        _merge(found, direct, via_helper)
    findings = [_finding(ctx, code, *entry, True) for entry in direct.values()]
    for entry, underlying in via_helper.values():
        if underlying not in direct:
            findings.append(_finding(ctx, code, *entry, False))
    return findings


def _candidates(facts, local: Analyzer):
    """The loops to judge: `for`/`while` loops and per-batch functions (`candidate_loops`), then
    comprehensions whose element may train (`[self.training_step(b) for b in self.loader]`)."""
    yield from candidate_loops(facts, local)
    for comp, cls, func in comprehension_loops(facts):
        scope = Scope(facts=facts, root=facts, cls=cls, func=func)
        try:
            if local.may_step_or_backward(comp, scope):
                yield comp, cls, func, build_comprehension_graph, scope
        except (TooLarge, RecursionError):
            continue


# (report node id, underlying backward node id, entry, is the report the backward itself?)
_Found = Tuple[int, int, _Entry, bool]


def _merge(found: List[_Found], direct: Dict[int, _Entry], via_helper: Dict[int, Tuple[_Entry, int]]) -> None:
    for key, underlying, entry, is_direct in found:
        if is_direct:
            direct.setdefault(underlying, entry)
        else:
            via_helper.setdefault(key, (entry, underlying))


def _per_receiver(ctx, facts, project, loop, cls: str, build, scope: Scope, direct, via_helper) -> None:
    """A loop of a base class whose `self.` methods differ between the class and its subclasses
    in the module: judged once per class the object may be (those the module instantiates, else
    every class of the family that has the methods), and reported only when it is wrong for each
    of them (precision first: one correct subclass means the code does not show the bug)."""
    results: List[List[_Found]] = []
    for receiver in _receivers(facts, cls):
        analyzer = Analyzer(facts, ctx.options, project)
        analyzer.receiver = receiver
        graph = build(loop, analyzer, scope)
        if analyzer.abstract_hit:
            continue  # an object of this class could not run the loop: not one to judge
        results.append(_entries(ctx, project, loop, graph, direct, via_helper))
    if results and all(results):
        for found in results:
            _merge(found, direct, via_helper)


def _receivers(facts, cls: str) -> List[str]:
    """The classes an object running a method of `cls` may have: those of `cls`'s family (itself
    and its subclasses in the module) that the module instantiates, else all of them."""
    members = family(facts, cls)
    wanted = set(members)
    built = {
        node.func.value
        for node in walk(facts.module)
        if type(node) is cst.Call and isinstance(node.func, cst.Name) and node.func.value in wanted  # type: ignore[attr-defined]
    }
    return [m for m in members if m in built] or members


def _entries(ctx, project, loop, graph, direct, via_helper) -> List[_Found]:
    """The findings of one loop's graph (groups already reported are skipped)."""
    facts = ctx.training_facts
    events = list(graph.events())
    found: List[_Found] = []
    per_item = per_item_names(loop)  # `[agent.learn(b) for agent in agents]`: a new optimizer per item
    optimizers = sorted({e.target for e in events if e.kind == STEP and e.target.split(".")[0] not in per_item})
    backwards = [e for e in events if e.kind == BACKWARD]
    if not optimizers or not backwards:
        return found
    # texts that name distinct optimizers: stepped here, or built as optimizers in this module
    known = frozenset(optimizers) | frozenset(
        e.target for e in events if e.kind == CLEAR and facts.kinds.get(e.target) == OPTIMIZER
    )
    inside = _calls_within(loop)
    groups: Dict[int, List[Event]] = {}
    reports: Dict[int, cst.CSTNode] = {}
    stepping = {_chain_key(e) for e in events if e.kind == STEP}
    for event in backwards:
        node = _report_node(event, inside, stepping)
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
            is_target = lambda e, members=members: id(e) in members  # noqa: E731
            step = stale_path(graph, optimizer, is_target, known)
            period: Optional[str] = None
            for unit in graph.periods() if step is None else ():
                # gates that line up only for k > 1: `if it % k == 1: zero_grad()` never runs with k == 1
                step, period = stale_path(graph, optimizer, is_target, known, unit=unit), unit[1:]
                if step is not None:
                    break
            if step is None:
                continue
            inner = _helper_loop(ctx, project, graph, group[0], report)
            if inner == _REPORTED_THERE:
                break  # the helper's own loop is where the clear is missing, and is reported there
            cleared = any(
                e.kind == CLEAR and (e.target in (optimizer, ALL) or optimizer == ALL or e.target not in known)
                for e in events
            )
            fix = None if inner else build_fix(ctx, loop, report, step, group[0], events, len(groups) == 1)
            entry = (report, step, optimizer, cleared, period, fix, bool(inner))
            found.append((key, underlying, entry, report is group[0].node))
            break
    return found


_IN_HELPER_LOOP = 1  # the backward runs in a loop of a followed helper
_REPORTED_THERE = 2  # ... and that loop, judged alone, reports it


def _helper_loop(ctx, project, graph, event: Event, report: cst.CSTNode) -> int:
    """Is the reported backward inside a loop of a helper the analysed loop calls (an epoch loop
    calling `run_epoch()`, whose batch loop forgets the clear)? `_REPORTED_THERE` when that loop,
    judged on its own in its module, reports the backward: the call site is then no finding of its
    own (its fix, a clear before the call, would run once per epoch). `_IN_HELPER_LOOP` when it
    does not (its optimizer is only known from the caller's argument): reported at the call, with
    no fix. 0 otherwise."""
    chain = event.chain
    start = next((i for i, (node, _local) in enumerate(chain) if node is report), len(chain))
    status = 0
    for index in range(start + 1, len(chain)):
        callee = graph.callees.get(id(chain[index - 1][0]))
        if callee is None or callee.func is None:
            continue
        node = chain[index][0]
        holding: List[Tuple[cst.CSTNode, Optional[str], Callable[..., LoopGraph]]] = [
            (inner, cls, build_loop_graph)
            for inner, cls, func in callee.facts.loops
            if func is callee.func and any(n is node for n in walk(inner))
        ]
        holding += [(comp, callee.cls, build_comprehension_graph) for comp in comprehension_contains(callee.func, node)]
        for inner, cls, build in holding:
            status = _IN_HELPER_LOOP
            if _reports_alone(ctx, project, callee.facts, inner, cls, callee.func, build, id(event.node)):
                return _REPORTED_THERE
    return status


def _reports_alone(ctx, project, facts, loop, cls, func, build, backward: int) -> bool:
    """Does `loop` of module `facts`, judged as when its own file is checked, have a stale path
    through the backward node `backward`?"""
    scope = Scope(facts=facts, root=facts, cls=cls, func=func)
    try:
        analyzer = Analyzer(facts, ctx.options, project)
        analyzer.loop_class = cls
        graph = build(loop, analyzer, scope)
        events = list(graph.events())
        optimizers = sorted({e.target for e in events if e.kind == STEP})
        known = frozenset(optimizers) | frozenset(
            e.target for e in events if e.kind == CLEAR and facts.kinds.get(e.target) == OPTIMIZER
        )
        is_target = lambda e: id(e.node) == backward  # noqa: E731
        return any(stale_path(graph, optimizer, is_target, known) is not None for optimizer in optimizers)
    except (TooLarge, RecursionError):
        return False


def _finding(
    ctx,
    code: str,
    report: cst.CSTNode,
    step: Event,
    optimizer: str,
    cleared: bool,
    period: Optional[str],
    fix: Optional[Fix],
    in_loop: bool,
    is_backward: bool,
) -> Finding:
    finding = _described(ctx, code, report, step, optimizer, cleared, period, in_loop, is_backward)
    if fix is None:
        finding = finding.with_(message=finding.message + _NO_FIX)
    return finding.with_(fix=fix)


# Said when no single place for the clear is right (it would go into another module's helper,
# or the step's condition is not an accumulation period and several backwards feed it).
_NO_FIX = " (no automatic fix: no single place for the clear is right here)"


def _described(
    ctx,
    code: str,
    report: cst.CSTNode,
    step: Event,
    optimizer: str,
    cleared: bool,
    period: Optional[str],
    in_loop: bool,
    is_backward: bool,
) -> Finding:
    step_node = step.local_node()
    step_line = ctx.position(step_node).start.line
    backward = _short(ctx, report)
    how = "are never cleared between steps" if not cleared else "are not cleared on every path between steps"
    if period is not None:
        # the clear's `% k` gate and the step's line up only for k > 1
        how = (
            f"are never cleared between steps when `{period} == 1` (then the step's `% {period}` gate opens "
            f"on every iteration and the clear's never does)"
        )
    if optimizer == PARAMS:
        tensor = _updated_tensor(step.node) or "p"
        local = step_node is step.node
        where = f"`{_short(ctx, step_node)}` (line {step_line})" if local else "in a helper"
        adds = "adds" if is_backward else "runs a backward that adds"
        if local and _one_tensor(ctx, step_node, tensor):
            # `delta.data += alpha * delta.grad` (an adversarial perturbation, a tutorial's `w`): a
            # tensor of no module, so `model.zero_grad()` would not clear it
            message = (
                f"`{backward}` {adds} to the gradient that the hand-written update {where} already applied: "
                f"`{tensor}.grad` {how.replace('are ', 'is ', 1)}; clear it after the update "
                f"(`{tensor}.grad = None`)"
            )
            return ctx.finding(code, report, message)
        message = (
            f"`{backward}` {adds} to gradients that the hand-written update {where} already applied: the "
            f"parameters' gradients {how}; clear them after the update (`{tensor}.grad = None`) or before "
            f"the backward (`model.zero_grad()`)"
        )
        return ctx.finding(code, report, message)
    name = "the optimizer" if optimizer == ALL else f"`{optimizer}`"
    clear = "optimizer.zero_grad()" if optimizer == ALL else f"{optimizer}.zero_grad()"
    if step_node is report and in_loop:
        # an epoch loop calling a helper whose own batch loop forgets the clear: the clear belongs there
        message = (
            f"`{backward}` runs a loop that runs a backward and steps {name}, adding to gradients that the "
            f"previous step already applied: {name}'s gradients {how}; call `{clear}` in that loop, before "
            f"the backward or after the step"
        )
        return ctx.finding(code, report, message)
    if step_node is report:
        message = (
            f"`{backward}` runs a backward and steps {name}, adding to gradients that its previous call "
            f"already applied: {name}'s gradients {how}; call `{clear}` before the call"
        )
        return ctx.finding(code, report, message)
    what = f"`{backward}` adds" if is_backward else f"`{backward}` runs a backward that adds"
    where = "right after the step, under its gate" if period is not None else "before the backward or after the step"
    message = (
        f"{what} to gradients that `{_short(ctx, step_node)}` (line {step_line}) already applied: "
        f"{name}'s gradients {how}; call `{clear}` {where}"
    )
    return ctx.finding(code, report, message)


def _one_tensor(ctx, update: cst.CSTNode, tensor: str) -> bool:
    """Does the hand-written `update` of `tensor` update one named tensor (`delta`, `w`, `self.w`)
    rather than each of several parameters in turn (the target of an enclosing
    `for p in model.parameters():`)? Read off the analysed file's loops around the update."""
    if "." in tensor.replace("self.", "", 1) or "[" in tensor:
        return False
    start = ctx.position(update).start
    spot = (start.line, start.column)
    for node in walk(ctx.module):
        inside: cst.CSTNode
        if isinstance(node, cst.For):
            targets, inside = list(bound_names(node.target)), node.body
        elif isinstance(node, (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)):
            targets, inside = [], node
            loop: Optional[cst.CompFor] = node.for_in
            while loop is not None:  # `[p.sub_(lr * p.grad) for group in groups for p in group]`
                targets += bound_names(loop.target)
                loop = loop.inner_for_in
        else:
            continue
        if tensor not in targets:
            continue
        span = ctx.position(inside)
        if (span.start.line, span.start.column) <= spot <= (span.end.line, span.end.column):
            return False
    return True


def _updated_tensor(node: cst.CSTNode) -> str:
    """`p` for the update `p.data -= lr * p.grad` (or `p.add_(p.grad, alpha=-lr)`)."""
    if isinstance(node, cst.Call):
        return updated_by_call(node) or ""
    return updated_by_statement(node) or ""
