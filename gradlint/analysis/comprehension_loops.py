"""Comprehensions as loops: `losses = [self.training_step(x, y) for x, y in self.loader]` runs a
training step per batch exactly as a `for` statement would, so GL001 judges such a comprehension
like a loop (`comprehension_loops`, `build_comprehension_graph`).

Only comprehensions whose element (or `if` clause) calls something are candidates; whether that
call steps and runs a backward is decided on the graph, as for `for` loops.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple, Union

import libcst as cst

from gradlint.analysis.calls import assigned_texts
from gradlint.analysis.effects import Analyzer
from gradlint.analysis.events import Scope
from gradlint.analysis.facts import ModuleFacts
from gradlint.analysis.flow import LoopGraph, Node, _Builder, _keep_correlated_decisions
from gradlint.analysis.tree import walk

Comprehension = Union[cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp]
_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)
_NESTED_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


def _elements(comp: Comprehension) -> List[cst.BaseExpression]:
    return [comp.key, comp.value] if isinstance(comp, cst.DictComp) else [comp.elt]


def _calls_something(comp: Comprehension) -> bool:
    """Does the element or an `if` clause contain a call (the only way it can train)?"""
    parts: List[cst.CSTNode] = list(_elements(comp))
    clause: Optional[cst.CompFor] = comp.for_in
    while clause is not None:
        parts.extend(cond.test for cond in clause.ifs)
        clause = clause.inner_for_in
    return any(type(node) is cst.Call for part in parts for node in walk(part, _NESTED_SCOPES))


def _in_body(root: cst.CSTNode) -> Iterator[Comprehension]:
    """Comprehensions of `root` (a def's body or the module), not those of nested defs/classes."""
    for node in walk(root, _NESTED_SCOPES):
        if node is not root and type(node) in _NESTED_SCOPES:
            continue
        if type(node) in _COMPREHENSIONS and _calls_something(node):  # type: ignore[arg-type]
            yield node  # type: ignore[misc]


def comprehension_loops(facts: ModuleFacts) -> Iterator[Tuple[Comprehension, Optional[str], Optional[cst.FunctionDef]]]:
    """Every comprehension of the module whose element calls something, with its class and def."""
    for comp in _in_body(facts.module):
        yield comp, None, None
    funcs: List[Tuple[cst.FunctionDef, Optional[str]]] = [
        (func, name) for name, info in facts.classes.items() for func in info.methods.values()
    ]
    methods = {id(func) for func, _ in funcs}
    funcs += [(func, None) for func in facts.defs.values() if id(func) not in methods]
    for func, cls in funcs:
        for comp in _in_body(func.body):
            yield comp, cls, func


def per_item_names(loop: cst.CSTNode) -> frozenset:
    """For a comprehension, the names its `for` clauses bind (`agent` in `[agent.learn(b) for agent
    in agents]`): an optimizer reached through one is another object on every item, so a path
    around the comprehension's back edge does not step the same optimizer twice. Empty for other
    loops (a `for` statement's target may be a batch or an optimizer of a nested loop)."""
    if type(loop) not in _COMPREHENSIONS:
        return frozenset()
    names: List[str] = []
    clause: Optional[cst.CompFor] = loop.for_in  # type: ignore[attr-defined]
    while clause is not None:
        names.extend(text.split(".")[0] for text in assigned_texts(clause.target))
        clause = clause.inner_for_in
    return frozenset(names)


def comprehension_contains(func: Optional[cst.FunctionDef], node: cst.CSTNode) -> List[Comprehension]:
    """The comprehensions of `func`'s body (training ones, as `comprehension_loops` finds them)
    that contain `node`."""
    if func is None:
        return []
    return [comp for comp in _in_body(func.body) if any(inner is node for inner in walk(comp, _NESTED_SCOPES))]


def build_comprehension_graph(comp: Comprehension, analyzer: Analyzer, scope: Scope) -> LoopGraph:
    """The graph of a comprehension's iterations: header (its targets get new values) -> `if`
    clauses (a false one skips to the next item) -> element -> latch -> header. The first
    iterable is evaluated once, before the loop; inner `for` clauses' iterables on every item."""
    builder = _Builder(analyzer)
    kills: List[str] = []
    clause: Optional[cst.CompFor] = comp.for_in
    while clause is not None:
        kills.extend(assigned_texts(clause.target))
        clause = clause.inner_for_in
    header = builder.node([], kills=frozenset(kills))
    latch = builder.node([])
    latch.succ.append(header)
    preds: List[Node] = [header]
    clause = comp.for_in
    first = True
    while clause is not None and preds:
        if not first:
            preds = builder.effects(preds, analyzer.expr_effects(clause.iter, scope), scope)
        for cond in clause.ifs:
            preds = builder.effects(preds, analyzer.expr_effects(cond.test, scope), scope)
            skipped = builder.node(preds)
            skipped.succ.append(latch)
            preds = [builder.node(preds)]
        clause = clause.inner_for_in
        first = False
    for element in _elements(comp):
        preds = builder.effects(preds, analyzer.expr_effects(element, scope), scope)
    for pred in preds:
        pred.succ.append(latch)
    _keep_correlated_decisions(builder.nodes)
    return LoopGraph(header=header, nodes=builder.nodes, callees=builder.callees)
