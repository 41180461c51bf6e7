"""Clears that wipe a backward's gradients before the step that should use them (the
gradients-cleared-before-step rule's analysis).

`loss.backward(); optimizer.zero_grad(); optimizer.step()` steps on nothing; an unconditional
`zero_grad()` between the backward and an accumulation-gated step (or at the top of every iteration
while the step runs every k-th) throws away all but the last micro-batch.

For every backward of a loop, every path from it (on the shared loop graphs,
`gradlint.analysis.ordering`) is followed to the first optimizer step. A path is *fine* when that
step sees the backward's gradients, when something reads `.grad` first (a probe or a log), or when a
call we cannot see into might step or read; it is *wiped* when a clear of that optimizer comes
first. A clear is found when every path from the backward that reaches a step is wiped by it. A
backward followed first by another optimizer's step (a GAN's discriminator) is meant for that
optimizer, so the generator's clear after it is fine; a loop without a step has no finding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.flush_gates import is_flush_gate
from gradlint.analysis.names import dotted
from gradlint.analysis.ordering import (
    ALL,
    BACKWARD,
    CLEAR,
    DEFINITE,
    GATE,
    MAYBE_STEP,
    MAYBE_UNSCALE,
    MIRROR,
    READ,
    STEP,
    Event,
    Finished,
    LoopInfo,
    clear_kind,
    explore,
    report_node,
)
from gradlint.analysis.tree import children

# Secondary networks whose zero_grad() does not touch the stepped model's gradients.
_SECONDARY = re.compile(r"ema|target|teacher|frozen|shadow|swa|averag|disc|critic|net_?d\b|^d$|_d$", re.I)
# Tests of an `if` that gate a step for gradient accumulation.
_ACCUMULATION_WORDS = re.compile(r"accum|sync_grad|update_step|do_step|should_step|step_now|is_step", re.I)


@dataclass(frozen=True)
class WipingClear:
    """A clear (`node`: where to report it, the clear itself or the helper call leading to it)
    that wipes `backward`'s gradients before `step`; `partly`: the step still sees the last
    micro-batches of an accumulation (the clear runs on every iteration, the step every k-th)."""

    node: cst.CSTNode
    clear: Event
    backward: Event
    step: Event
    partly: bool
    gate: Optional[cst.If] = None  # the clear's `if`, when its test is the step's (see _same_gate_wipes)


def wiping_clears(ctx) -> List[WipingClear]:
    """Every clear of the file that wipes gradients before their step, once each."""
    reported: Dict[int, WipingClear] = {}
    sources = ctx.training_facts.sources
    for loop in ctx.ordering_loops:
        if not any(e.kind == STEP for e in loop.events):
            continue  # saliency maps, Fisher information, probes: nothing is stepped
        gates = _AccumulationGates(ctx, loop)
        models = _Models(sources, _iterated_modules(loop))
        for backward in [e for e in _unique(loop.events) if e.kind == BACKWARD]:
            for clear, step, partly in _wiping_clears(loop, backward, gates, models, ctx.options):
                node = report_node(clear, loop)
                if node is not None and id(node) not in reported:
                    reported[id(node)] = WipingClear(node, clear, backward, step, partly)
        for wipe in _same_gate_wipes(ctx, loop, models):
            reported.setdefault(id(wipe.node), wipe)
    # A helper whose own loop clears between its backward and its step is reported there, on the
    # clear; the call of that helper in an outer loop (an epoch loop) is the same bug again.
    direct = {id(wipe.clear.node) for wipe in reported.values() if wipe.node is wipe.clear.node}
    return [wipe for wipe in reported.values() if wipe.node is wipe.clear.node or id(wipe.clear.node) not in direct]


def _unique(events: List[Event]) -> List[Event]:
    seen: set = set()
    out = []
    for event in events:
        if id(event) not in seen:
            seen.add(id(event))
            out.append(event)
    return out


def _wiping_clears(loop: LoopInfo, backward: Event, gates: "_AccumulationGates", models: "_Models",
                   options) -> List[Tuple]:
    """(clear, step, partly) for the clears that wipe `backward`'s gradients on every path from it
    to a step; [] when some path steps on them, reads them, or cannot be judged."""
    gated = gates.gated_steps(backward)
    flushes = gates.flushes()
    clears: Dict[int, Event] = {}

    def on_event(state, event: Event):
        if state[0] == "pre":
            return ("on", (), False, False, False, frozenset()) if event is backward else state
        _, cleared, stepped, crossed, refilled, closed = state
        kind = event.kind
        if kind in (READ, MAYBE_STEP, MAYBE_UNSCALE):
            return Finished("fine")
        if kind == CLEAR:
            how = clear_kind(event, options)
            if how == GATE:
                return state
            if how not in (DEFINITE, MIRROR):
                return Finished("fine")  # a call we cannot see into: it may step or read first
            if id(event) in cleared:
                return state
            clears[id(event)] = event
            return ("on", cleared + (id(event),), stepped, crossed, refilled, closed)
        if kind == STEP:
            for clear_id in cleared:
                if _covers(clears[clear_id], event, models):
                    return Finished("wiped-partly" if refilled else "wiped", clears[clear_id], event)
            if id(event) in gated and not crossed:
                return Finished("pruned")  # the accumulation gate is closed in this iteration
            return ("on", cleared, True, crossed, refilled, closed)
        if kind == BACKWARD:
            if stepped:
                return Finished("fine")  # a new backward for the next step: ours was used
            if cleared:
                if event is not backward or not crossed:
                    # another backward after the clear: the step has gradients, perhaps of another
                    # model; ours were lost, but whether they mattered cannot be told
                    return Finished("other")
                return ("on", cleared, stepped, crossed, True, closed)  # the next micro-batch of an accumulation
            return state
        return state

    def on_cross(state):
        return state if state[0] == "pre" else state[:3] + (True,) + state[4:]

    outcomes = explore(loop.graph, ("pre",), on_event, on_cross=on_cross,
                       on_edge=flushes.on_edge if flushes.active else None)
    if not outcomes or any(o.verdict == "fine" for o in outcomes):
        return []
    found = []
    for outcome in outcomes:
        if outcome.verdict.startswith("wiped") and _reportable(outcome.culprit, options):
            found.append((outcome.culprit, outcome.witness, outcome.verdict == "wiped-partly"))
    return found


def _reportable(clear: Optional[Event], options) -> bool:
    """A definite clear that is not part of an optimizer's step closure."""
    if clear is None or clear_kind(clear, options) != DEFINITE:
        return False
    for node, _local in clear.chain[:-1]:
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "step":
            return False  # optimizer.step(closure): the closure clears and recomputes on purpose
    return True


@dataclass(frozen=True)
class _Models:
    """What tells whose gradients a clear drops: `sources`, module text -> the optimizers built on
    its parameters; `iterated`, id of a per-parameter clear (`p.grad = None` in
    `for p in backbone.parameters():`) -> the text of the module whose parameters it loops over."""

    sources: Dict[str, set]
    iterated: Dict[int, str]


def _covers(clear: Event, step: Event, models: _Models) -> bool:
    """Does `clear` drop gradients that `step` would use (all of them, for a per-parameter clear
    over one module's parameters: a frozen backbone's or a discriminator's, cleared before the
    step of an optimizer that also holds others, drops what that step was not meant to use)?"""
    sources = models.sources
    module = models.iterated.get(id(clear.node))
    if module is not None and step.target != ALL:
        if _SECONDARY.search(module.rsplit(".", 1)[-1]):
            return False
        if sources:
            holders = sources.get(module)
            if holders is None or step.target not in holders:
                return False  # another optimizer's model, or one we cannot place
            if any(step.target in stepped for text, stepped in sources.items() if text != module):
                return False  # the step also holds other modules' parameters: they keep theirs
    if step.target == ALL:
        return clear.target == ALL and _model_clear_covers(clear, sources)
    if clear.target == step.target:
        return True
    if clear.target != ALL:
        return False  # another optimizer's gradients
    return _model_clear_covers(clear, sources)


def _iterated_modules(loop: LoopInfo) -> Dict[int, str]:
    """id of each per-parameter clear written in `loop` inside `for p in M.parameters():` (or
    `for name, p in M.named_parameters():`) whose `p` it clears -> the text of M."""
    out: Dict[int, str] = {}
    stack: List[cst.CSTNode] = [loop.loop]
    while stack:
        node = stack.pop()
        stack.extend(children(node))
        if not isinstance(node, cst.For) or node is loop.loop:
            continue
        it = node.iter
        if not (isinstance(it, cst.Call) and isinstance(it.func, cst.Attribute)
                and it.func.attr.value in ("parameters", "named_parameters")):
            continue
        owner = it.func.value
        module = dotted(owner)
        if not module and isinstance(owner, cst.Subscript) and dotted(owner.value):
            module = f"{dotted(owner.value)}[]"  # `backbone[0]`: a part of a model, never a whole one
        target: cst.BaseExpression = node.target
        if isinstance(target, cst.Tuple) and target.elements:
            target = target.elements[-1].value
        if not module or not isinstance(target, cst.Name):
            continue
        inner: List[cst.CSTNode] = [node.body]
        while inner:
            current = inner.pop()
            cleared = _grad_owner(current)
            if isinstance(cleared, cst.Name) and cleared.value == target.value:
                out[id(current)] = module
            inner.extend(children(current))
    return out


def _model_clear_covers(clear: Event, sources: Dict[str, set]) -> bool:
    """`model.zero_grad()` clears the stepped optimizer's gradients unless the model is known to be
    another one (an EMA copy, a target network, the discriminator of a GAN whose optimizer we
    know)."""
    node = clear.node
    owner = _grad_owner(node)
    if owner is not None and not isinstance(owner, cst.Name):
        return False  # `self.delta.grad.zero_()`: one tensor, not the stepped model's parameters
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "zero_grad":
        text = dotted(node.func.value) or ""
        last = text.rsplit(".", 1)[-1]
        if _SECONDARY.search(last):
            return False
        if sources and text not in sources and text not in ("self", "model", "self.model"):
            return False  # some optimizers' models are known, and this is none of them
    return True


def _grad_owner(node: cst.CSTNode) -> Optional[cst.BaseExpression]:
    """`p` in `p.grad = None`, `p.grad.zero_()`, `del p.grad`; None for other clears."""
    target: Optional[cst.BaseExpression] = None
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        target = node.func.value
    elif isinstance(node, cst.Assign) and node.targets:
        target = node.targets[0].target
    elif isinstance(node, (cst.AnnAssign, cst.Del)):
        target = node.target
    if isinstance(target, cst.Attribute) and target.attr.value == "data":
        target = target.value
    if isinstance(target, cst.Attribute) and target.attr.value in ("grad", "main_grad"):
        return target.value
    return None


class _AccumulationGates:
    """Steps under an `if` that opens only every k-th iteration (`if (i + 1) % k == 0:`,
    `if accelerator.sync_gradients:`), written directly in the analysed loop."""

    def __init__(self, ctx, loop: LoopInfo) -> None:
        self.loop = loop
        self._parents: Optional[Dict[int, cst.CSTNode]] = None
        self.active = not any(e.kind == CLEAR and clear_kind(e, ctx.options) == GATE for e in loop.events)
        self.module = ctx.module
        self._functions = {id(node): func for node, _cls, func in ctx.training_facts.loops}
        self._flushes: Optional[_Flushes] = None

    def parents(self) -> Dict[int, cst.CSTNode]:
        if self._parents is None:
            parents: Dict[int, cst.CSTNode] = {}
            stack = [self.loop.loop]
            while stack:
                node = stack.pop()
                for child in children(node):
                    parents[id(child)] = node
                    stack.append(child)
            self._parents = parents
        return self._parents

    def _ancestors(self, node: cst.CSTNode) -> List[cst.CSTNode]:
        parents = self.parents()
        out = []
        current = parents.get(id(node))
        while current is not None and current is not self.loop.loop:
            out.append(current)
            current = parents.get(id(current))
        return out

    def gated_steps(self, backward: Event) -> set:
        """ids of the step events gated for accumulation in a way that does not also gate
        `backward` (so in the iterations where the gate is closed, the step does not run)."""
        if not self.active:
            return set()
        back_node = report_node(backward, self.loop)
        if back_node is None:
            return set()
        back_ancestors = {id(a) for a in self._ancestors(back_node)}
        out = set()
        for event in self.loop.events:
            if event.kind != STEP:
                continue
            node = report_node(event, self.loop)
            if node is None:
                continue
            for ancestor in self._ancestors(node):
                if isinstance(ancestor, (cst.For, cst.While, cst.FunctionDef)):
                    break  # inside a nested loop or def: not this loop's gate
                if isinstance(ancestor, cst.If) and self._accumulation_test(ancestor.test):
                    if id(ancestor) not in back_ancestors:
                        out.add(id(event))
                    break
        return out

    def flushes(self) -> "_Flushes":
        """The accumulation gates of steps in loops nested in this one that also open on their
        loop's last iteration (`or i + 1 == len(loader)`), as edges of the loop graph."""
        if self._flushes is not None:
            return self._flushes
        found = _Flushes()
        graph = self.loop.graph
        for event in (self.loop.events if self.active else ()):
            node = report_node(event, self.loop) if event.kind == STEP else None
            gate_loop = self._flush_gate(node) if node is not None else None
            if gate_loop is None:
                continue
            gate, inner = gate_loop
            for _then, other in graph.branches.get(id(gate), ()):
                found.closing[id(other)] = id(inner)
            for head, latch in graph.loops.get(id(inner), ()):
                found.heads[id(head)] = id(inner)
                found.latches[id(latch)] = (id(inner), head)
        self._flushes = found
        return found

    def _flush_gate(self, node: cst.CSTNode) -> Optional[Tuple[cst.If, cst.For]]:
        """(the `if`, its `for`) when `node` is under an accumulation `if` written in the body of a
        `for` nested in this loop (not in a loop or def nested in that one) whose test also holds
        on that loop's last iteration: where the test is false, the iteration is not the last."""
        gate: Optional[cst.If] = None
        for ancestor in self._ancestors(node):
            if isinstance(ancestor, (cst.While, cst.FunctionDef, cst.Lambda, cst.ClassDef)):
                return None
            if gate is None:
                if isinstance(ancestor, cst.For):
                    return None
                if isinstance(ancestor, cst.If) and self._accumulation_test(ancestor.test):
                    gate = ancestor
            elif isinstance(ancestor, cst.For):
                scope = self._functions.get(id(ancestor)) or self.module
                return (gate, ancestor) if is_flush_gate(gate, ancestor, scope) else None
        return None

    def _accumulation_test(self, test: cst.BaseExpression) -> bool:
        if _modulo(test):
            return True
        stack: List[cst.CSTNode] = [test]
        while stack:
            node = stack.pop()
            if isinstance(node, (cst.Name, cst.Attribute)):
                text = dotted(node) if isinstance(node, cst.Attribute) else node.value
                if text and _ACCUMULATION_WORDS.search(text):
                    return True
            stack.extend(children(node))
        return False


class _Flushes:
    """Where a path may go once a flush gate was seen closed: that iteration of its loop is not
    the last, so the path cannot leave the loop at the end of the iteration (it steps there on
    the last one). `closing`: id of the node entered when such a gate's test is false -> the id
    of its loop; `heads` / `latches`: that loop's head and latch nodes (a latch's successors
    other than the head leave the loop). The state's last item is the set of loops whose gate was
    seen closed since their head."""

    def __init__(self) -> None:
        self.closing: Dict[int, int] = {}
        self.heads: Dict[int, int] = {}
        self.latches: Dict[int, Tuple[int, object]] = {}

    @property
    def active(self) -> bool:
        return bool(self.closing and self.latches)

    def on_edge(self, state, node, succ):
        if state[0] != "on":
            return state
        closed = state[-1]
        latch = self.latches.get(id(node))
        if latch is not None and succ is not latch[1] and latch[0] in closed:
            return None  # leaving the loop after an iteration that was not its last
        loop = self.heads.get(id(succ))
        if loop is not None and loop in closed:
            closed = closed - {loop}  # a new iteration: it may be the last
        loop = self.closing.get(id(succ))
        if loop is not None:
            closed = closed | {loop}
        return state if closed is state[-1] else state[:-1] + (closed,)


# ---------------------------------------------------------------------------------------------
# The same accumulation gate on the clear before the backward and on the step after it
# ---------------------------------------------------------------------------------------------


def _same_gate_wipes(ctx, loop: LoopInfo, models: _Models) -> List[WipingClear]:
    """`if i % k == 0: opt.zero_grad()` at the top of the body, then the backward, then
    `if i % k == 0: opt.step()`: the clear and the step open in the same iterations, so what the
    backwards of the iterations in between accumulated is wiped before the step that should use it
    (the step sees one micro-batch). The path walk cannot tell: it does not know the two tests
    agree. Both `if`s are statements of the loop body with the same test (a modulo, no `else`), its
    names not assigned between them; the backward is a statement between them; nothing reads `.grad`
    or might step in the loop."""
    events = _unique(loop.events)
    if any(e.kind in (READ, MAYBE_STEP, MAYBE_UNSCALE) for e in events):
        return []
    body = getattr(getattr(loop.loop, "body", None), "body", None)
    if not isinstance(body, (list, tuple)):
        return []
    gates = {i: stmt for i, stmt in enumerate(body)
             if isinstance(stmt, cst.If) and stmt.orelse is None and _modulo(stmt.test)}
    if len(gates) < 2:
        return []
    where = _statement_index(body)
    found = []
    for clear in events:
        if clear.kind != CLEAR or not _reportable(clear, ctx.options):
            continue
        at = _placed(clear, loop, where, gates)
        if at is None:
            continue
        test = ctx.code(gates[at].test)
        for step in events:
            if step.kind != STEP or not _covers(clear, step, models):
                continue
            step_at = _placed(step, loop, where, gates)
            if step_at is None or step_at <= at or ctx.code(gates[step_at].test) != test:
                continue
            if _assigned_between(body[at:step_at], _names(gates[at].test)):
                continue  # `step += 1` between them: the tests differ by an iteration (a correct gate)
            for backward in events:
                node = report_node(backward, loop)
                if backward.kind == BACKWARD and node is not None and at < where.get(id(node), -1) < step_at:
                    clear_node = report_node(clear, loop)
                    if clear_node is not None:
                        found.append(WipingClear(clear_node, clear, backward, step, True, gates[at]))
                    break
    return found


def _statement_index(body) -> Dict[int, int]:
    """id of every node in the loop body -> the index of the body statement holding it."""
    where: Dict[int, int] = {}
    for index, statement in enumerate(body):
        stack = [statement]
        while stack:
            node = stack.pop()
            where[id(node)] = index
            stack.extend(children(node))
    return where


def _placed(event: Event, loop: LoopInfo, where: Dict[int, int], gates: Dict[int, cst.If]) -> Optional[int]:
    """The index of the gate holding `event`'s node directly (not in a nested loop or def)."""
    node = report_node(event, loop)
    index = where.get(id(node)) if node is not None else None
    if index is None or index not in gates:
        return None
    stack: List[Tuple[cst.CSTNode, bool]] = [(child, False) for child in children(gates[index].body)]
    while stack:
        current, nested = stack.pop()
        if current is node:
            return None if nested else index
        nested = nested or isinstance(current, (cst.For, cst.While, cst.FunctionDef, cst.Lambda))
        stack.extend((child, nested) for child in children(current))
    return None


def _modulo(test: cst.BaseExpression) -> bool:
    stack: List[cst.CSTNode] = [test]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Modulo):
            return True
        stack.extend(children(node))
    return False


def _names(test: cst.BaseExpression) -> set:
    """Dotted names read by a test (`i`, `self.step`)."""
    out = set()
    stack: List[cst.CSTNode] = [test]
    while stack:
        node = stack.pop()
        if isinstance(node, (cst.Name, cst.Attribute)):
            text = dotted(node)
            if text:
                out.add(text)
                if isinstance(node, cst.Attribute):
                    continue
        stack.extend(children(node))
    return out


def _assigned_between(statements, names: set) -> bool:
    stack: List[cst.CSTNode] = list(statements)
    while stack:
        node = stack.pop()
        targets: List[cst.CSTNode] = []
        if isinstance(node, cst.Assign):
            targets = [t.target for t in node.targets]
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, cst.NamedExpr):
            targets = [node.target]
        for target in targets:
            for sub in [target, *getattr(target, "elements", ())]:
                sub = getattr(sub, "value", sub) if isinstance(sub, cst.Element) else sub
                if isinstance(sub, (cst.Name, cst.Attribute)) and dotted(sub) in names:
                    return True
        stack.extend(children(node))
    return False
