"""Graphs carried into the next iteration: the fact GL008 reads.

`carried_states`: a backward in a loop whose root reads a value that the previous iteration's
forward produced from its own previous value (`output, hidden = model(x, hidden)`,
`h = cell(x, h)`, `total = total + loss`) and that nothing in the loop detaches (`.detach()`,
`detach_()`, a `repackage_hidden`-style helper, `.data`) or re-creates after the backward. The
second backward walks into the first one's freed graph and raises "Trying to backward through the
graph a second time", or, with `retain_graph=True`, the graph grows without bound.

Read off GL002's def-use scopes (`Scope.carried`: what a loop body reads before assigning it; the
classes and definitions of names) with the helpers of `gradlint.analysis.lifetimes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterator, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.backward import BackwardCall
from gradlint.analysis.graph_scope import Scope
from gradlint.analysis.lifetimes import (
    Loop,
    defined_in,
    head_of,
    loops_of,
    names_of,
    smalls_of,
    target_names,
    under_no_grad,
)
from gradlint.analysis.names import dotted
from gradlint.analysis.reads import INERT, is_false, is_true
from gradlint.analysis.retained import GraphAnalysis
from gradlint.analysis.tree import SCOPES, block_statements, typed, walk

# Words in a `forward` that cut the graph of a state it is handed.
_DETACH_WORDS = ("detach", "repackage", ".data")


@dataclass(frozen=True)
class CarriedState:
    """A backward whose root reads a state carried over from the previous iteration's graph."""

    backward: BackwardCall
    state: str  # the carried name
    producer: cst.CSTNode  # the statement of the loop that produces it from its previous value
    retained: bool  # the backward passes retain_graph=True





def carried_states(analysis: GraphAnalysis, module: cst.Module) -> List[CarriedState]:
    found: List[CarriedState] = []
    classes = _classes_by_name(module)
    seen: Set[cst.Call] = set()
    for scope in analysis.scopes:
        for loop in loops_of(scope):
            for state in _carried_in_loop(analysis, scope, loop, classes):
                if state.backward.node not in seen:
                    seen.add(state.backward.node)
                    found.append(state)
    return found


def _carried_in_loop(analysis, scope: Scope, loop: Loop, classes) -> Iterator[CarriedState]:
    calls = [later for later in scope.calls_within(block_statements(loop.body)) if later.backward is not None]
    if not calls:
        return
    carried = scope.carried(loop)
    inside = defined_in(scope, loop)
    cut = _cut_in_loop(scope, loop)
    candidates: Dict[str, cst.CSTNode] = _stateful_calls(analysis, scope, loop)
    targets = target_names(loop.target) if isinstance(loop, cst.For) else set()
    for key in sorted(carried):
        if key in cut or key not in inside or key in targets:
            continue  # detached, not produced in the loop, or rebound by the loop header itself
        producer = _recurrence(analysis, scope, key, inside[key], classes)
        if producer is not None and not _definitely_bound_before(scope, producer, loop, key):
            candidates[key] = producer
    if not candidates:
        return
    order = {node: index for index, node in enumerate(walk(scope.node))}
    for later in calls:
        backward = later.backward
        stmt = analysis.statement_of.get(later.node)
        if stmt is None or backward is None or backward.tensor is None:
            continue
        if backward.create_graph is not None and not is_false(backward.create_graph):
            continue  # higher-order / unrolled optimisation keeps its graphs on purpose
        if under_no_grad(scope, stmt):
            continue
        deps = carried_reads(scope, backward.tensor, later.node, loop, order)
        reset = scope.reset_after(stmt, loop, set())
        retained = is_true(backward.retain_graph)
        # retain_graph=True, or an expression (`retain_graph=c < n_chunks - 1`: all but the last)
        retains = retained or (backward.retain_graph is not None and not is_false(backward.retain_graph))
        if retains and not _steps_inside(loop):
            # Every backward feeds one step after the loop: full backpropagation through the
            # sequence, computed piecewise. Wasteful, but each graph is walked for the same step.
            continue
        for key, producer in candidates.items():
            if key in deps and key not in reset and not _reset_in_branch(scope, stmt, loop, key):
                yield CarriedState(backward, key, producer, retained)
                break


def _steps_inside(loop: Loop) -> bool:
    """Does the loop body step an optimizer (`opt.step()`, `scaler.step(opt)`, by the names the
    rest of the analysis uses for optimizers) or update parameters by hand from their gradients
    (`p -= lr * p.grad`)? Then a retained graph outlives the step it fed."""
    from gradlint.analysis.manual_updates import has_manual_update
    from gradlint.analysis.names import dotted
    from gradlint.analysis.object_kinds import OPTIMIZER, name_kind

    for node in walk(loop.body):
        if type(node) is cst.Call and isinstance(node.func, cst.Attribute) and node.func.attr.value == "step":
            receiver = dotted(node.func.value) or ""
            if name_kind(receiver) == OPTIMIZER or "scaler" in receiver.lower():
                return True
    return has_manual_update(loop.body)


def carried_reads(
    scope: Scope, expr: cst.BaseExpression, at: cst.CSTNode, loop: Loop, order: Dict[cst.CSTNode, int]
) -> Set[str]:
    """Names whose value from *before this iteration* flows into `expr` evaluated at `at`: the
    backward's root is traced through the last definition before each use (in source order) while
    that definition lies in this iteration of `loop`; a name read with no such definition comes
    from the previous iteration (or from before the loop)."""
    start = order.get(loop, -1)
    out: Set[str] = set()
    todo: List[Tuple[str, int]] = [(k, order.get(at, -1)) for k in scope.analysis.reads.reads(expr).keys]
    seen: Set[Tuple[str, int]] = set()
    while todo:
        key, where = todo.pop()
        if (key, where) in seen:
            continue
        seen.add((key, where))
        # The shared value of `a, b = f(...)` is defined by the same statement as `a` and `b`.
        limit = where + 1 if key.startswith("<unpacked@") else where
        earlier = [d for d in scope.defs.get(key, ()) if start < order.get(d.node, -1) < limit]
        if not earlier:
            out.add(key)
            continue
        latest = max(earlier, key=lambda d: order.get(d.node, -1))
        if scope.inert_definition(latest) or latest.loop_target is not None:
            continue
        todo.extend((k, order.get(latest.node, -1)) for k in latest.reads.keys)
    return out


_RESET_WORDS = ("reset", "init", "detach", "repackage", "clear", "zero_state")


def _stateful_calls(analysis, scope: Scope, loop: Loop) -> Dict[str, cst.CSTNode]:
    """`<state:model>` -> the statement calling `model` in the loop, for instances of this file's
    classes that keep a tensor with history on `self` between calls (`y, self.hidden = self.lstm(x,
    self.hidden)` in `forward`), unless the loop resets or detaches that state through the object
    (`model.reset_hidden()`, `model.hidden = None`)."""
    out: Dict[str, cst.CSTNode] = {}
    for callee in sorted(analysis.reads.stateful):
        found: Optional[cst.CSTNode] = None
        reset = False
        for stmt in scope.statements_within(block_statements(loop.body)):
            for small in smalls_of(scope, stmt):
                for node in walk(small, SCOPES):
                    if isinstance(node, cst.Call):
                        name = dotted(node.func) or ""
                        if name in (callee, callee + ".forward") and found is None:
                            found = small
                        elif name.startswith(callee + ".") and any(w in name.lower() for w in _RESET_WORDS):
                            reset = True
                if isinstance(small, cst.Assign) and any(
                    (dotted(t.target) or "").startswith(callee + ".") for t in small.targets
                ):
                    reset = True
        if found is not None and not reset and _feeds_itself(analysis.module, scope, callee):
            out[f"<state:{callee}>"] = found
    return out


def _feeds_itself(module: cst.Module, scope: Scope, callee: str) -> bool:
    """Does the callee's class (in this file) read, in `forward`, an attribute it also assigns
    there (`y, self.hidden = self.lstm(x, self.hidden)`), with nothing detaching it? An attribute
    only written (`self.attention = weights` kept for plotting) feeds no later forward."""
    owner = _class_of_instance(module, scope, callee, _classes_by_name(module))
    if owner is None:
        return False
    for stmt in block_statements(owner.body):
        if not isinstance(stmt, cst.FunctionDef) or stmt.name.value not in ("forward", "__call__"):
            continue
        code = cst.Module(body=[stmt]).code
        if any(word in code for word in _DETACH_WORDS):
            return False
        # In source order: an attribute read before this call assigns it holds the previous call's.
        assigned: Set[str] = set()
        stale: Set[str] = set()
        stored: Set[str] = set()
        for node in walk(stmt.body, SCOPES):
            if isinstance(node, cst.Assign):
                stale |= {n for n in names_of(node.value) if n.startswith("self.")} - assigned
                for target in node.targets:
                    assigned |= {t for t in target_names(target.target) if t.startswith("self.")}
                stored |= assigned
        return bool(stale & stored)
    return False


def _recurrence(analysis, scope: Scope, key: str, definitions, classes) -> Optional[cst.CSTNode]:
    """The in-loop statement computing `key` from its own previous value with history (a recurrent
    step `out, h = model(x, h)`, `h = torch.tanh(W @ x + U @ h)`, `total = total + loss`), or None."""
    for definition in definitions:
        if scope.inert_definition(definition):
            continue
        keys = set(definition.reads.keys)
        opaque = definition.reads.opaque
        node = definition.node
        for shared in [k for k in keys if k.startswith("<unpacked@")]:
            keys.discard(shared)
            for inner in scope.defs.get(shared, ()):
                keys |= inner.reads.keys
                opaque = opaque or inner.reads.opaque
                node = inner.node
        if key not in keys and head_of(key) not in keys:
            continue
        others = [k for k in keys if k != key and k != head_of(key)]
        if not opaque and not any(scope.class_of(k) != INERT for k in others):
            continue  # a view or copy of itself (`h = h.unsqueeze(1)`, `x = x.to(device)`), not a new step
        value = getattr(node, "value", None)
        if isinstance(value, cst.Call) and _forward_detaches(analysis.module, scope, value.func, classes):
            continue
        return node
    return None


def _definitely_bound_before(scope: Scope, small: cst.CSTNode, loop: Loop, key: str) -> bool:
    """Is `key` bound afresh on every path from the top of the loop body to `small` (branches that
    raise, return or continue count as binding it)? Then no previous iteration reaches it there."""
    line = next((s for s in scope.places if isinstance(s, cst.SimpleStatementLine) and small in s.body), None)
    if line is None:
        return False
    for _node, place in scope.enclosing(line):
        if any(_binds_on_all_paths(scope, earlier, key) for earlier in place.block[: place.index]):
            return True
        if place.parent is loop:
            break
    return False


def _binds_on_all_paths(scope: Scope, stmt: cst.CSTNode, key: str) -> bool:
    if isinstance(stmt, cst.SimpleStatementLine):
        for small in stmt.body:
            if isinstance(small, (cst.Raise, cst.Return, cst.Continue, cst.Break)):
                return True
            if isinstance(small, cst.Assign) and any(key in target_names(t.target) for t in small.targets):
                if key not in set(names_of(small.value)):
                    return True
        return False
    if isinstance(stmt, cst.If):
        if stmt.orelse is None:
            return False
        other = [stmt.orelse] if isinstance(stmt.orelse, cst.If) else block_statements(stmt.orelse.body)
        return _block_binds(scope, block_statements(stmt.body), key) and _block_binds(scope, other, key)
    if isinstance(stmt, cst.With):
        return _block_binds(scope, block_statements(stmt.body), key)
    return False


def _block_binds(scope: Scope, block, key: str) -> bool:
    return any(_binds_on_all_paths(scope, stmt, key) for stmt in block)


def _cut_in_loop(scope: Scope, loop: Loop) -> Set[str]:
    """Names the loop body detaches somewhere (`h = h.detach()`, `h.detach_()`, `h = repackage_hidden(h)`,
    `h = h.data`, `h = tuple(v.detach() for v in h)`) or clears in place (`h.clear()`, `del h[:]`)."""
    cut: Set[str] = set()
    reads = scope.analysis.reads
    for stmt in scope.statements_within(block_statements(loop.body)):
        for small in smalls_of(scope, stmt):
            if isinstance(small, cst.Assign):
                value = reads.reads(small.value)
                # what a helper of another module returns is unknown, but its name says it cuts
                # the graph (`h = repackage_hidden(h)` imported from a utils module)
                if (value.kind == INERT or _named_detaching_call(small.value)) and \
                        _detaching_text(small.value, reads.detaching):
                    for target in small.targets:
                        cut |= target_names(target.target)
            elif isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
                func = small.value.func
                if isinstance(func, cst.Attribute) and func.attr.value in ("detach_", "clear"):
                    key = dotted(func.value)
                    if key:
                        cut.add(key)
            elif isinstance(small, cst.Del):
                targets = small.target.elements if isinstance(small.target, (cst.Tuple, cst.List)) else [small.target]
                for element in targets:
                    base = getattr(element, "value", element) if isinstance(element, cst.BaseElement) else element
                    while isinstance(base, cst.Subscript):
                        base = base.value
                    key = dotted(base) if isinstance(base, (cst.Name, cst.Attribute)) else None
                    if key:
                        cut.add(key)
    return cut


def _named_detaching_call(expr: cst.BaseExpression) -> bool:
    """Is the expression a call of a function named as a detaching helper is
    (`repackage_hidden(h)`, `utils.detach_state(h)`)?"""
    if not isinstance(expr, cst.Call):
        return False
    last = (dotted(expr.func) or "").split(".")[-1].lower()
    return "detach" in last or "repackage" in last


def _detaching_text(expr: cst.BaseExpression, detaching: FrozenSet[str]) -> bool:
    """Does the expression cut a graph (`.detach()`, `.data`, a detaching helper of the file, any
    callee named like one), rather than build a new value?"""
    for node in walk(expr):
        if isinstance(node, cst.Call):
            name = dotted(node.func) or ""
            last = name.split(".")[-1]
            if "detach" in last.lower() or "repackage" in last.lower() or last in detaching:
                return True
        if isinstance(node, cst.Attribute) and node.attr.value == "data":
            return True
    return False


def _reset_in_branch(scope: Scope, stmt: cst.CSTNode, loop: Loop, key: str) -> bool:
    """Is `key` re-created or cleared after the backward in the blocks that hold it (the same `if`
    branch as an every-k-steps backward: `loss.backward(); ...; log_probs = []`)?"""
    for _node, place in scope.enclosing(stmt):
        for later in place.block[place.index + 1 :]:
            # Only unconditional statements of the blocks around the backward: a reset under
            # `if done:` leaves every other step carrying the graph.
            for small in smalls_of(scope, later):
                if isinstance(small, cst.Assign) and any(key in target_names(t.target) for t in small.targets):
                    if key not in set(names_of(small.value)):
                        return True
                if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
                    func = small.value.func
                    if isinstance(func, cst.Attribute) and func.attr.value in ("clear", "detach_"):
                        if dotted(func.value) == key:
                            return True
        if place.parent is loop:
            break
    return False


def _classes_by_name(module: cst.Module) -> Dict[str, cst.ClassDef]:
    # (No class is written inside a comprehension: the module's classes, in walk order.)
    return {node.name.value: node for node in typed(module, cst.ClassDef)}  # type: ignore[attr-defined,misc]


def _forward_detaches(
    module: cst.Module, scope: Scope, func: cst.BaseExpression, classes: Dict[str, cst.ClassDef]
) -> bool:
    """Is the callee an instance of a class of this file whose `forward` detaches what it carries?"""
    callee = dotted(func)
    if callee is None:
        return False
    owner = _class_of_instance(module, scope, callee, classes)
    if owner is None:
        return False
    for stmt in block_statements(owner.body):
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value in ("forward", "__call__"):
            code = cst.Module(body=[stmt]).code
            return any(word in code for word in _DETACH_WORDS)
    return False


def _class_of_instance(
    module: cst.Module, scope: Scope, callee: str, classes: Dict[str, cst.ClassDef]
) -> Optional[cst.ClassDef]:
    """`model` bound to `RNNModel(...)` (or `RNNModel(...).to(device)`), or `self.rnn` set to one anywhere."""
    if callee in classes:
        return None  # constructing, not calling an instance
    current: Optional[Scope] = scope
    while current is not None:
        for definition in current.defs.get(callee, ()):
            value = getattr(definition.node, "value", None)
            while (
                isinstance(value, cst.Call)
                and isinstance(value.func, cst.Attribute)
                and isinstance(value.func.value, cst.Call)
            ):
                value = value.func.value
            if isinstance(value, cst.Call):
                name = dotted(value.func)
                if name is not None and name.split(".")[-1] in classes:
                    return classes[name.split(".")[-1]]
        current = current.outer
    if callee.startswith("self."):
        for node in walk(module):
            if isinstance(node, cst.Assign) and any(dotted(t.target) == callee for t in node.targets):
                value = node.value
                if isinstance(value, cst.Call):
                    name = dotted(value.func)
                    if name is not None and name.split(".")[-1] in classes:
                        return classes[name.split(".")[-1]]
    return None
