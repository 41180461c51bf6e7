"""Control flow of a loop body, as a graph of gradient events, and path search over it.

`build_loop_graph` turns one `for`/`while` loop into a small graph: each node holds the gradient
events (backward / step / clear, from `gradlint.analysis.effects`) of a statement, in order; edges follow
`if`/`elif`/`else`, nested loops, `with`, `try`/`except`/`else`/`finally`, `break`, `continue`,
`return` and `raise`, and the loop's back edge. Helpers called in the loop (same module, `self.`
methods, project modules) are followed into, up to a small depth.

Branch conditions are remembered along a path: two `if` statements with the same condition (the same
text, or gated on the same `% k`; see `gradlint.analysis.conditions`) take the same branch unless
a name in the condition is assigned in between. That is what makes `if (i + 1) % k == 0:
opt.step()` ... `if (i + 1) % k == 0: opt.zero_grad()` one decision. Nested loops are assumed to
run at least once (a `for p in model.parameters(): p.grad = None` always clears).

`stale_backwards` answers GL001's question for one optimizer: which backward calls lie on a path
step -> (no clear) -> backward -> (no clear) -> step.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, FrozenSet, Iterator, List, Optional, Sequence, Set, Tuple

import libcst as cst

from gradlint.analysis.calls import assigned_texts, assigns_grad, calls_in
from gradlint.analysis.conditions import condition_key, unit_branch, without_not
from gradlint.analysis.effects import Analyzer
from gradlint.analysis.events import ALL, BACKWARD, CLEAR, STEP, Event, Inline, Scope
from gradlint.analysis.facts import ModuleFacts, implicit_loops, iter_loops
from gradlint.analysis.generators import Part, context_parts
from gradlint.analysis.manual_updates import PARAMS
from gradlint.analysis.tree import walk

MAX_INLINE_DEPTH = 4
MAX_INLINES = 150  # helper bodies followed while building one loop's graph (beyond: skip the loop)
MAX_NODES = 4000  # a loop body larger than this is not analysed (precision first: silent)
MAX_DECISIONS = 10  # conditions remembered along a path (each doubles the states searched)
MAX_STATES = 200_000  # a search that visits more states gives up (silent)


class Node:
    """A point in the loop: its events in order; `decide` is a branch decision taken on entry."""

    __slots__ = ("events", "succ", "decide", "kills", "unit")

    def __init__(self, events: Sequence[Event] = (), decide=None, kills: FrozenSet[str] = frozenset()) -> None:
        self.events = list(events)
        self.succ: List[Node] = []
        self.decide: Optional[Tuple[str, FrozenSet[str], bool]] = decide
        self.kills = kills
        # (period key, taken?) for a branch of a `% k` gate when `k == 1` (see conditions.unit_branch)
        self.unit: Optional[Tuple[str, bool]] = None


@dataclass
class LoopGraph:
    header: Node
    nodes: List[Node] = field(default_factory=list)
    # id of a helper call followed while building -> the helper's scope (its module, def, class)
    callees: Dict[int, Scope] = field(default_factory=dict)
    # id of a nested loop statement -> its (head, latch) nodes; the latch's other successors leave it
    loops: Dict[int, List[Tuple[Node, Node]]] = field(default_factory=dict)
    # id of an `if` statement -> its (then, other) entry nodes (`other`: the test was false)
    branches: Dict[int, List[Tuple[Node, Node]]] = field(default_factory=dict)

    def events(self):
        for node in self.nodes:
            yield from node.events

    def periods(self) -> List[str]:
        """Keys of the `% k` gates (k a setting) whose branches are known when `k == 1`."""
        return sorted({node.unit[0] for node in self.nodes if node.unit is not None})


class TooLarge(Exception):
    """The loop's graph grew past MAX_NODES."""


# Jump targets while building -------------------------------------------------------------------


@dataclass
class _LoopFrame:
    latch: Node
    breaks: List[Node]


@dataclass
class _FuncFrame:
    returns: List[Node]


@dataclass
class _TryFrame:
    dispatch: Node


@dataclass
class _ExitFrame:
    parts: List[Part]  # run when a jump leaves the `with` block, innermost first


@dataclass
class _FinallyFrame:
    body: cst.BaseSuite
    scope: Scope


class _Builder:
    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self.nodes: List[Node] = []
        self.frames: list = []
        self.active: List[Tuple[int, int]] = []  # helpers being followed (recursion guard)
        self.inlined = 0
        # `do_step = (i + 1) % k == 0`: a flag that stands for a `% k` gate, by name
        self.gates: Dict[str, Tuple[str, FrozenSet[str], bool]] = {}
        self.unit_gates: Dict[str, Tuple[str, bool]] = {}  # the same flags, evaluated with k == 1
        self.callees: Dict[int, Scope] = {}  # see LoopGraph.callees
        self.loops: Dict[int, List[Tuple[Node, Node]]] = {}  # see LoopGraph.loops
        self.branches: Dict[int, List[Tuple[Node, Node]]] = {}  # see LoopGraph.branches

    # nodes ----------------------------------------------------------------------------------
    def node(self, preds: Sequence[Node], events: Sequence[Event] = (), decide=None, kills=frozenset()) -> Node:
        if len(self.nodes) >= MAX_NODES:
            raise TooLarge()
        new = Node(events, decide, kills)
        for pred in preds:
            pred.succ.append(new)
        self.nodes.append(new)
        return new

    def effects(self, preds: List[Node], effects, scope: Scope, kills=frozenset()) -> List[Node]:
        """Chain the effects of one statement: events share a node, helpers are followed."""
        pending: List[Event] = []
        for effect in effects:
            if isinstance(effect, Event):
                pending.append(effect)
                continue
            if pending:
                preds = [self.node(preds, pending)]
                pending = []
            part = effect if isinstance(effect, Part) else None
            preds = self.inline(part.inline, preds, part.statements) if part else self.inline(effect, preds)
        if (pending or kills) and preds:
            preds = [self.node(preds, pending, kills=kills)]
        return preds

    def inline(self, inline: Inline, preds: List[Node], statements: Optional[Sequence] = None) -> List[Node]:
        """Follow a helper's body (or only `statements` of it: a part of a generator)."""
        if inline.key in self.active or len(self.active) >= MAX_INLINE_DEPTH:
            return preds
        self.inlined += 1
        if self.inlined > MAX_INLINES:
            raise TooLarge()
        self.callees.setdefault(id(inline.site), inline.scope)
        self.active.append(inline.key)
        saved = self.frames
        frame = _FuncFrame(returns=[])
        self.frames = [f for f in saved if isinstance(f, _TryFrame)] + [frame]
        try:
            exits = (self.block(inline.body, preds, inline.scope) if statements is None
                     else self.statements(statements, preds, inline.scope))
        finally:
            self.frames = saved
            self.active.pop()
        return exits + frame.returns

    # statements -----------------------------------------------------------------------------
    def block(self, body: cst.CSTNode, preds: List[Node], scope: Scope) -> List[Node]:
        stmts: Sequence[cst.CSTNode]
        if isinstance(body, cst.IndentedBlock):
            stmts = body.body
        elif isinstance(body, cst.SimpleStatementSuite):
            return self.simple(body.body, preds, scope)
        else:
            stmts = [body]
        return self.statements(stmts, preds, scope)

    def statements(self, stmts: Sequence[cst.CSTNode], preds: List[Node], scope: Scope) -> List[Node]:
        dispatch = self.handler_entry()
        for stmt in stmts:
            if not preds:
                break  # unreachable after break/continue/return/raise
            if dispatch is not None:
                for pred in preds:  # the statement may raise before doing anything
                    if dispatch not in pred.succ:
                        pred.succ.append(dispatch)
            preds = self.statement(stmt, preds, scope)
        return preds

    def handler_entry(self) -> Optional[Node]:
        """Where an exception raised here goes: the innermost enclosing `try`'s handlers."""
        for frame in reversed(self.frames):
            if isinstance(frame, _TryFrame):
                return frame.dispatch
        return None

    def statement(self, stmt: cst.CSTNode, preds: List[Node], scope: Scope) -> List[Node]:
        if isinstance(stmt, cst.SimpleStatementLine):
            return self.simple(stmt.body, preds, scope)
        if isinstance(stmt, cst.If):
            return self.if_(stmt, preds, scope)
        if isinstance(stmt, (cst.For, cst.While)):
            return self.loop(stmt, preds, scope)
        if isinstance(stmt, cst.With):
            return self.with_(stmt, preds, scope)
        if isinstance(stmt, cst.Try):
            return self.try_(stmt, preds, scope)
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            return preds  # a definition runs nothing here
        # match and anything newer: follow the calls in order, no branches
        return self.effects(preds, self.analyzer.expr_effects(stmt, scope), scope)

    def simple(self, smalls: Sequence[cst.BaseSmallStatement], preds: List[Node], scope: Scope) -> List[Node]:
        for small in smalls:
            if not preds:
                break
            preds = self.effects(preds, self.analyzer.statement_effects(small, scope), scope, _kills(small))
            self.remember_gate(small, scope)
            if isinstance(small, cst.Break):
                self.jump("break", preds)
                return []
            if isinstance(small, cst.Continue):
                self.jump("continue", preds)
                return []
            if isinstance(small, cst.Return):
                self.jump("return", preds)
                return []
            if isinstance(small, cst.Raise):
                self.jump("raise", preds)
                return []
        return preds

    def remember_gate(self, small: cst.BaseSmallStatement, scope: Scope) -> None:
        """Track `flag = <a % k gate>` so that `if flag:` and `if i % k == 0:` are one decision."""
        if not isinstance(small, cst.Assign) or len(small.targets) != 1:
            return
        target = small.targets[0].target
        if not isinstance(target, cst.Name):
            return
        key = condition_key(small.value, scope.facts.module)
        if key is not None and key[0].startswith("%"):
            self.gates[target.value] = key
        else:
            self.gates.pop(target.value, None)
        unit = unit_branch(small.value, scope.facts.module)
        if unit is not None:
            self.unit_gates[target.value] = unit
        else:
            self.unit_gates.pop(target.value, None)

    def unit_of(self, test: cst.BaseExpression, module: cst.Module) -> Optional[Tuple[str, bool]]:
        """Which branch `test` takes when its `% k` period is 1 (flags included), or None."""
        inner, positive = without_not(test)
        if isinstance(inner, cst.Name) and inner.value in self.unit_gates:
            key, holds = self.unit_gates[inner.value]
            return key, holds == positive
        return unit_branch(test, module)

    def gate_of(self, test: cst.BaseExpression) -> Optional[Tuple[str, FrozenSet[str], bool]]:
        positive = True
        while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            test = test.expression
            positive = not positive
        if isinstance(test, cst.Name) and test.value in self.gates:
            key, names, value = self.gates[test.value]
            return key, names, value if positive else not value
        return None

    def jump(self, kind: str, preds: List[Node]) -> None:
        """Send `preds` to the target of break/continue/return/raise, through any `finally`."""
        frames = self.frames
        for index in range(len(frames) - 1, -1, -1):
            frame = frames[index]
            if isinstance(frame, _FinallyFrame):
                saved = self.frames
                self.frames = frames[:index]
                try:
                    preds = self.block(frame.body, preds, frame.scope)
                finally:
                    self.frames = saved
                if not preds:
                    return
            elif isinstance(frame, _ExitFrame):
                saved, self.frames = self.frames, frames[:index]
                try:
                    preds = self.run_parts(frame.parts, preds)
                finally:
                    self.frames = saved
                if not preds:
                    return
            elif isinstance(frame, _LoopFrame) and kind in ("break", "continue"):
                if kind == "continue":
                    for pred in preds:
                        pred.succ.append(frame.latch)
                else:
                    frame.breaks.extend(preds)
                return
            elif isinstance(frame, _FuncFrame) and kind == "return":
                frame.returns.extend(preds)
                return
            elif isinstance(frame, _TryFrame) and kind == "raise":
                for pred in preds:
                    pred.succ.append(frame.dispatch)
                return
        # no target inside the analysed loop: the path leaves it

    def if_(self, stmt: cst.If, preds: List[Node], scope: Scope) -> List[Node]:
        preds = self.effects(preds, self.analyzer.expr_effects(stmt.test, scope), scope, _walrus(stmt.test))
        constant = _bound_flag(stmt.test, scope)
        if constant is True:  # `if zero_grad:` in a helper called with zero_grad=True
            return self.block(stmt.body, preds, scope)
        if constant is False:
            if stmt.orelse is None:
                return preds
            if isinstance(stmt.orelse, cst.If):
                return self.if_(stmt.orelse, preds, scope)
            return self.block(stmt.orelse.body, preds, scope)
        key = self.gate_of(stmt.test) or condition_key(stmt.test, scope.facts.module)
        none_branch = _grad_none_branch(stmt.test)
        if none_branch is not None:
            # `if p.grad is not None: p.grad.zero_()`: the branch that skips the clear has nothing
            # to clear. Only when the other branch does clear (a grad-norm loop clears nothing).
            clearing = (
                stmt.body if none_branch is False else (stmt.orelse.body if isinstance(stmt.orelse, cst.Else) else None)
            )
            if clearing is None or not _clears_syntactically(clearing):
                none_branch = None
        cleared = [scope.event(CLEAR, ALL, stmt.test)]
        branch_events = self.analyzer.branch_events
        then = self.node(
            preds, (cleared if none_branch is True else []) + branch_events(stmt.test, scope, True),
            decide=(key[0], key[1], key[2]) if key else None
        )
        unit = self.unit_of(stmt.test, scope.facts.module)
        then.unit = unit
        exits = self.block(stmt.body, [then], scope)
        other = self.node(
            preds, (cleared if none_branch is False else []) + branch_events(stmt.test, scope, False),
            decide=(key[0], key[1], not key[2]) if key else None
        )
        other.unit = (unit[0], not unit[1]) if unit is not None else None
        self.branches.setdefault(id(stmt), []).append((then, other))
        if stmt.orelse is None:
            return exits + [other]
        if isinstance(stmt.orelse, cst.If):  # elif
            return exits + self.if_(stmt.orelse, [other], scope)
        return exits + self.block(stmt.orelse.body, [other], scope)

    def loop(self, stmt, preds: List[Node], scope: Scope) -> List[Node]:
        """A nested loop, taken to run its body at least once."""
        if isinstance(stmt, cst.For):
            preds = self.effects(preds, self.analyzer.expr_effects(stmt.iter, scope), scope)
            head = self.node(preds, kills=frozenset(assigned_texts(stmt.target)))
            latch = Node()
            self.nodes.append(latch)
            endless = False
        else:
            preds = self.effects(preds, self.analyzer.expr_effects(stmt.test, scope), scope, _walrus(stmt.test))
            head = self.node(preds)
            latch = self.node([], self.analyzer_events(stmt.test, scope))
            endless = _always_true(stmt.test)
        latch.succ.append(head)
        self.loops.setdefault(id(stmt), []).append((head, latch))
        frame = _LoopFrame(latch=latch, breaks=[])
        self.frames.append(frame)
        try:
            exits = self.block(stmt.body, [head], scope)
        finally:
            self.frames.pop()
        for pred in exits:
            pred.succ.append(latch)
        after = [] if endless else [latch]
        if stmt.orelse is not None and after:
            after = self.block(stmt.orelse.body, after, scope)
        return after + frame.breaks

    def analyzer_events(self, expr: cst.CSTNode, scope: Scope) -> List[Event]:
        """Events of an expression evaluated again at a loop's latch (helpers not followed)."""
        return [e for e in self.analyzer.expr_effects(expr, scope) if isinstance(e, Event)]

    def with_(self, stmt: cst.With, preds: List[Node], scope: Scope) -> List[Node]:
        """The items' calls, the body, then (for `@contextmanager` generators followed as items)
        the part of each generator after its `yield`, innermost first, also where the body
        leaves by break, continue or return."""
        effects: list = []
        kills = set()
        exits: List[Part] = []
        for item in stmt.items:
            for effect in self.analyzer.context_effects(item.item, scope):
                func = effect.scope.func if isinstance(effect, Inline) else None
                parts = context_parts(func) if func is not None else None  # (None: not a generator)
                if parts is None:
                    effects.append(effect)
                    continue
                effects.append(Part(effect, parts[0]))  # type: ignore[arg-type]
                exits.insert(0, Part(effect, parts[1]))  # type: ignore[arg-type]
            if item.asname is not None:
                kills.update(assigned_texts(item.asname.name))
        preds = self.effects(preds, effects, scope, frozenset(kills))
        if not exits:
            return self.block(stmt.body, preds, scope)
        self.frames.append(_ExitFrame(exits))
        try:
            preds = self.block(stmt.body, preds, scope)
        finally:
            self.frames.pop()
        return self.run_parts(exits, preds)

    def run_parts(self, parts: List[Part], preds: List[Node]) -> List[Node]:
        for part in parts:
            preds = self.inline(part.inline, preds, part.statements) if preds else preds
        return preds

    def try_(self, stmt: cst.Try, preds: List[Node], scope: Scope) -> List[Node]:
        if stmt.finalbody is not None:
            self.frames.append(_FinallyFrame(stmt.finalbody.body, scope))
        dispatch = Node()
        self.nodes.append(dispatch)
        self.frames.append(_TryFrame(dispatch))
        try:
            exits = self.block(stmt.body, preds, scope)  # each statement may raise into dispatch
        finally:
            self.frames.pop()
        if stmt.orelse is not None and exits:
            exits = self.block(stmt.orelse.body, exits, scope)
        for handler in stmt.handlers:
            kills = frozenset(assigned_texts(handler.name.name)) if handler.name is not None else frozenset()
            entry = self.node([dispatch], kills=kills)
            exits = exits + self.block(handler.body, [entry], scope)
        if stmt.finalbody is not None:
            self.frames.pop()
            if exits:
                exits = self.block(stmt.finalbody.body, exits, scope)
        return exits


# Names assigned, for forgetting branch decisions ---------------------------------------------


def _walrus(expr: cst.CSTNode) -> FrozenSet[str]:
    """Names bound by `:=` anywhere in `expr` (a read-only walk: visitors rebuild the tree)."""
    found: List[str] = []
    for node in walk(expr):
        if type(node) is cst.NamedExpr:
            found.extend(assigned_texts(node.target))
    return frozenset(found)


def _kills(small: cst.BaseSmallStatement) -> FrozenSet[str]:
    names: List[str] = []
    if isinstance(small, cst.Assign):
        for target in small.targets:
            names.extend(assigned_texts(target.target))
    elif isinstance(small, (cst.AugAssign, cst.AnnAssign)):
        names.extend(assigned_texts(small.target))
    return frozenset(names)


def _clears_syntactically(body: cst.CSTNode) -> bool:
    """Does `body` contain an obvious gradient clear (`.zero_()`, `.zero_grad()`, `.grad = ...`)?"""
    for call in calls_in(body):
        if isinstance(call.func, cst.Attribute) and call.func.attr.value in (
            "zero_",
            "detach_",
            "zero_grad",
            "fill_",
            "mul_",
        ):
            return True
    return assigns_grad(body)


def _grad_none_branch(test: cst.BaseExpression) -> Optional[bool]:
    """For `if p.grad is None` / `if p.grad is not None`: the branch (True/False) taken when the
    gradient is already cleared, so that skipping a clear there is no missed clear."""
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return None
    comparison = test.comparisons[0]
    left = test.left
    if not (isinstance(left, cst.Attribute) and left.attr.value == "grad"):
        return None
    if not (isinstance(comparison.comparator, cst.Name) and comparison.comparator.value == "None"):
        return None
    if isinstance(comparison.operator, cst.Is):
        return True
    if isinstance(comparison.operator, cst.IsNot):
        return False
    return None


def _bound_flag(test: cst.BaseExpression, scope: Scope) -> Optional[bool]:
    """The value of `if flag:` / `if not flag:` in a followed helper whose parameter `flag` the
    call site passed as the literal True or False (SAM's `second_step(zero_grad=True)`)."""
    positive = True
    while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test = test.expression
        positive = not positive
    if not isinstance(test, cst.Name) or not scope.binding:
        return None
    bound, was_bound = scope.subst(test.value)
    if not was_bound or bound not in ("True", "False"):
        return None
    return (bound == "True") == positive


def _always_true(test: cst.BaseExpression) -> bool:
    if isinstance(test, cst.Name) and test.value == "True":
        return True
    return isinstance(test, cst.Integer) and test.value not in ("0",)


# Building and searching --------------------------------------------------------------------------


def build_loop_graph(loop, analyzer: Analyzer, scope: Scope) -> LoopGraph:
    """The graph of one loop's iterations: header -> body -> latch -> header."""
    builder = _Builder(analyzer)
    if isinstance(loop, cst.For):
        header = builder.node([], kills=frozenset(assigned_texts(loop.target)))
        latch = builder.node([])
    else:
        header = builder.node([], builder.analyzer_events(loop.test, scope), kills=_walrus(loop.test))
        latch = builder.node([])
    latch.succ.append(header)
    frame = _LoopFrame(latch=latch, breaks=[])  # breaks leave the loop: no path continues
    builder.frames.append(frame)
    exits = builder.block(loop.body, [header], scope)
    for pred in exits:
        pred.succ.append(latch)
    _keep_correlated_decisions(builder.nodes)
    return LoopGraph(header, builder.nodes, builder.callees, builder.loops, builder.branches)


def build_body_graph(func: cst.FunctionDef, analyzer: Analyzer, scope: Scope) -> LoopGraph:
    """The graph of a function that a framework calls once per batch (Lightning's `training_step`
    with manual optimization): header (its parameters get new values) -> body -> latch -> header;
    `return` ends the iteration."""
    builder = _Builder(analyzer)
    params = [p.name.value for p in (*func.params.posonly_params, *func.params.params, *func.params.kwonly_params)]
    header = builder.node([], kills=frozenset(params))
    latch = builder.node([])
    latch.succ.append(header)
    frame = _FuncFrame(returns=[])
    builder.frames.append(frame)
    exits = builder.block(func.body, [header], scope)
    for pred in exits + frame.returns:
        pred.succ.append(latch)
    _keep_correlated_decisions(builder.nodes)
    return LoopGraph(header, builder.nodes, builder.callees, builder.loops, builder.branches)


# (loop or per-batch function, its class, its function, the graph builder for it, its scope)
CandidateLoop = Tuple[cst.CSTNode, Optional[str], Optional[cst.FunctionDef], Callable[..., LoopGraph], Scope]


def candidate_loops(facts: ModuleFacts, analyzer: Analyzer) -> Iterator[CandidateLoop]:
    """The loops written in the module, then the per-batch functions a framework loops over
    (Lightning `training_step` with manual optimization, Ignite steps), in that order, without
    those that cannot step or run a backward (per `analyzer`), nor the loops nested in such a
    loop; loops too large to judge are skipped. Shared by every rule that reads loop graphs."""
    gated_out: Set[int] = set()
    candidates: List[Tuple[cst.CSTNode, Optional[str], Optional[cst.FunctionDef], Callable[..., LoopGraph]]] = [
        (loop, cls, func, build_loop_graph) for loop, cls, func in iter_loops(facts)]
    candidates += [(step, cls, step, build_body_graph) for step, cls in implicit_loops(facts)]
    for loop, cls, func, build in candidates:
        scope = Scope(facts=facts, root=facts, cls=cls, func=func)
        parent = facts.loop_parent.get(id(loop))
        if parent is not None and id(parent) in gated_out:
            gated_out.add(id(loop))
            continue
        try:
            possible = analyzer.may_step_or_backward(loop, scope)
        except (TooLarge, RecursionError):
            continue
        if not possible:
            gated_out.add(id(loop))
            continue
        yield loop, cls, func, build, scope


def _keep_correlated_decisions(nodes: List[Node]) -> None:
    """Remember only conditions tested by two or more `if`s: a condition tested once cannot
    correlate with another test, and every remembered condition doubles the search space."""
    counts: Dict[str, int] = {}
    for node in nodes:
        if node.decide is not None:
            counts[node.decide[0]] = counts.get(node.decide[0], 0) + 1
    kept: List[str] = []
    for key, count in counts.items():
        if count >= 4 and len(kept) < MAX_DECISIONS:  # each `if` gives a then- and an else-node
            kept.append(key)
    keep = set(kept)
    for node in nodes:
        if node.decide is not None and node.decide[0] not in keep:
            node.decide = None


def _clears(event: Event, optimizer: str, known: FrozenSet[str]) -> bool:
    """Does `event` clear `optimizer`'s gradients? A clear of an optimizer we cannot tell apart from
    it (`for o in optimizers: o.zero_grad()`, a helper's parameter) clears every optimizer."""
    if event.kind != CLEAR:
        return False
    if optimizer in (ALL, PARAMS):  # a hand-written update: any clear may be of its parameters
        return True
    return event.target == optimizer or event.target == ALL or event.target not in known


def _steps(event: Event, optimizer: str) -> bool:
    return event.kind == STEP and event.target == optimizer


def _enter(node: Node, decisions: FrozenSet, unit: Optional[str] = None) -> Optional[FrozenSet]:
    """Decisions after entering `node`, or None if the node contradicts an earlier decision (or,
    with `unit` set, is a branch of that `% k` gate not taken when `k == 1`)."""
    if unit is not None and node.unit is not None and node.unit[0] == unit:
        return decisions if node.unit[1] else None
    if node.kills and decisions:
        decisions = frozenset(
            d for d in decisions if not any(n == k or n.startswith(k + ".") for n in d[1] for k in node.kills)
        )
    if node.decide is not None:
        key, names, value = node.decide
        for d in decisions:
            if d[0] == key:
                return decisions if d[2] == value else None
        decisions = decisions | {(key, names, value)}
    return decisions


def stale_path(
    graph: LoopGraph, optimizer: str, is_target, known: FrozenSet[str] = frozenset(), unit: Optional[str] = None
) -> Optional[Event]:
    """A step of `optimizer` whose gradients a target backward adds to before the next step of it.

    Searches paths step(O) -> (no clear of O) -> backward accepted by `is_target` -> (no clear of O)
    -> step(O), around the back edge as often as needed. Returns the first such step, or None.
    `known` are the optimizer texts that name distinct optimizers (stepped in the loop, or built in
    the module); a clear of any other text is taken to clear every optimizer.
    Phases: 0 looking for a step; 1 stepped; 2 stepped, then a target backward; 3 as 2, and another
    optimizer has stepped since the backward. A backward is taken to be meant for the steps that
    follow it before the next backward: in a GAN loop, the discriminator's backward (followed by
    the discriminator's step, then the generator's backward) is not blamed for the generator's
    missing clear, while `loss.backward(); enc_opt.step(); dec_opt.step()` still is for dec_opt.
    With `unit` (a period key from `graph.periods()`), the `% k` gates of that period take the
    branch they take when `k == 1`.
    """
    start = _enter(graph.header, frozenset(), unit)
    if start is None:
        return None  # (a header takes no branch decision: never the case)
    queue: Deque[Tuple[Node, int, Optional[Event], FrozenSet]] = deque([(graph.header, 0, None, start)])
    seen: Set[Tuple[int, int, Optional[int], FrozenSet]] = {(id(graph.header), 0, None, start)}
    while queue:
        node, phase, step, decisions = queue.popleft()
        for event in node.events:
            if phase == 0:
                if _steps(event, optimizer):
                    phase, step = 1, event
            elif _clears(event, optimizer, known):
                phase, step = 0, None
            elif _steps(event, optimizer):
                if phase >= 2:
                    return step
                step = event
            elif event.kind == BACKWARD:
                if phase == 1 and is_target(event):
                    phase = 2
                elif phase == 3:
                    # a new backward for the other optimizer's next step: the target one was not
                    # meant for `optimizer` (unless it is the target again)
                    phase = 2 if is_target(event) else 1
            elif phase == 2 and event.kind == STEP:
                phase = 3
        for succ in node.succ:
            entered = _enter(succ, decisions, unit)
            if entered is None:
                continue
            key = (id(succ), phase, id(step) if step is not None else None, entered)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > MAX_STATES:
                return None
            queue.append((succ, phase, step, entered))
    return None
