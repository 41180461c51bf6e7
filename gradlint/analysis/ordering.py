"""What happens to gradients between a backward and the step that uses them, in the order a loop
runs it: clipping, GradScaler unscaling, reads of `.grad`, clears and steps.

This layer sits on the shared training-loop facts (`gradlint.analysis.facts`) and loop control-flow
graphs (`gradlint.analysis.flow`); it does not build a control-flow graph of its own.
`OrderingAnalyzer` is the facts layer's `Analyzer` with a few more event kinds recorded on the same
graph nodes (a clip, an unscale, a scaled backward, a read of `.grad`, a call that may step), and it
follows helpers that clip, unscale or read gradients as well as those that step or clear.
`explore` walks a loop graph's paths (with the graph's correlated branch decisions) and reports
how each path ends, for the questions the ordering rules ask (clip-grad-misuse,
gradients-cleared-before-step).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.backward import backward_call
from gradlint.analysis.conditions import without_not
from gradlint.analysis.effects import Analyzer
from gradlint.analysis.events import ALL, BACKWARD, CLEAR, STEP, Event, Inline, Scope
from gradlint.analysis.facts import ModuleFacts
from gradlint.analysis.object_kinds import ENGINE, OPTIMIZER, SCALER
from gradlint.analysis.flow import LoopGraph, Node, TooLarge, candidate_loops
from gradlint.analysis.grad_calls import (
    clearing_assignment,
    clip_call,
    reads_grad,
    reads_grad_statement,
    scaled_backward_scaler,
    scaler_flags,
    unscale_call,
    wiping_call,
)
from gradlint.analysis.names import dotted
from gradlint.analysis.project import Project
from gradlint.analysis.tree import walk

# Event kinds this layer adds to the facts layer's BACKWARD / STEP / CLEAR.
CLIP = "clip"  # target: the clip's flavour (grad_calls.CLIP_TORCH / CLIP_SCALE_AWARE)
UNSCALE = "unscale"  # target: the scaler's text
SCALED = "scaled-backward"  # just before the BACKWARD of `scaler.scale(loss).backward()`; target: the scaler
READ = "grad-read"  # an expression reads a `.grad` value
MAYBE_STEP = "maybe-step"  # `engine.step()`, `thing.step()` of an object we cannot identify
MAYBE_UNSCALE = "maybe-unscale"  # a call we cannot see into, handed the scaler or named so
# entering the branch of `if scaler.is_enabled():` (or of the flag the scaler was built with,
# `GradScaler(enabled=args.amp)` ... `if args.amp:`) where the test is false: the scaler is off
# there, its scale() a no-op; target: the scaler's text
SCALER_IDLE = "scaler-idle"

__all__ = [
    "ALL", "BACKWARD", "CLEAR", "STEP", "CLIP", "UNSCALE", "SCALED", "READ", "MAYBE_STEP",
    "MAYBE_UNSCALE", "SCALER_IDLE", "Event", "LoopGraph", "Node", "LoopInfo", "OrderingAnalyzer", "ordering_loops",
    "explore", "events_of", "clear_kind", "report_node", "Finished", "MAX_STATES",
]

MAX_STATES = 100_000  # a search visiting more states gives up (silent)

_NOT_STEPPERS = ("sched", "lr_", "warmup", "env", "ema", "swa", "averag", "progress", "pbar", "bar", "timer",
                 "scaler", "profiler", "prof", "meter", "logger", "writer", "stepper")


def _idle_scalers(test: cst.BaseExpression, outcome: bool, flags: Dict[str, str]) -> Set[str]:
    """Scalers (dotted names) off or absent wherever `test` evaluates to `outcome`. `flags` maps
    a flag a scaler was built with (`GradScaler(enabled=args.amp)`) to that scaler."""
    test, positive = without_not(test)
    if not positive:
        outcome = not outcome
    if isinstance(test, cst.BooleanOperation):
        left = _idle_scalers(test.left, outcome, flags)
        right = _idle_scalers(test.right, outcome, flags)
        # `a and b` true (`a or b` false): both hold; false (true): one of them, unknown which
        both = isinstance(test.operator, cst.And) == outcome
        return left | right if both else left & right
    compared = test.comparisons[0] if isinstance(test, cst.Comparison) and len(test.comparisons) == 1 else None
    if compared is not None and isinstance(compared.comparator, cst.Name) and compared.comparator.value == "None":
        operator = compared.operator
        absent = isinstance(operator, cst.Is) if outcome else isinstance(operator, cst.IsNot)
        name = dotted(test.left) if isinstance(test, cst.Comparison) else None
        return {name} if absent and name else set()
    if outcome:
        return set()
    if (isinstance(test, cst.Call) and not test.args and isinstance(test.func, cst.Attribute)
            and test.func.attr.value == "is_enabled"):
        name = dotted(test.func.value)
        return {name} if name else set()
    name = dotted(test)
    if name is None:
        return set()
    return {flags[name]} if name in flags else {name}  # a scaler object is never false


class OrderingAnalyzer(Analyzer):
    """The facts layer's `Analyzer` recording clips, unscales, scaled backwards, `.grad` reads and
    calls that may step, in the order they run, next to its backward/step/clear events."""

    def __init__(self, root: ModuleFacts, options, project) -> None:
        super().__init__(root, options, project)
        # The plain analyzer answers "does this helper step/clear/backward" with the shared,
        # memoised answer; this class only widens it (helpers that clip, unscale or read).
        self._plain = Analyzer(root, options, project)
        self._touching: Dict[int, bool] = {}
        self._flags: Dict[int, Dict[str, str]] = {}  # id(module) -> scaler_flags of it

    @property
    def needs_project(self) -> bool:
        return self.wants_project or self._plain.wants_project

    # -- events ------------------------------------------------------------------------------
    def branch_events(self, test: cst.BaseExpression, scope: Scope, taken: bool) -> List[Event]:
        """SCALER_IDLE on the branch where a scaler is off or absent: `scaler.is_enabled()` or the
        flag it was built with false, `scaler is None` (or `scaler` false), and `not`, `and`, `or`
        of those (`if scaler is not None and scaler.is_enabled(): scaler.unscale_(opt)`: both
        ways out of the test leave no scaled gradients to clip). The event only matters for the
        scaler a scaled backward used, so any name may be named."""
        module = scope.facts.module
        flags = self._flags.get(id(module))
        if flags is None:
            flags = self._flags[id(module)] = scaler_flags(module, scope.facts.imports)
        idle = _idle_scalers(test, taken, flags)
        return [scope.event(SCALER_IDLE, scope.subst(scaler)[0], test) for scaler in sorted(idle)]

    def call_effects(self, call: cst.Call, scope: Scope):
        effects = super().call_effects(call, scope)
        imports = scope.facts.imports
        clip = clip_call(call, imports)
        if clip is not None:
            if clip.measures_only:
                return effects  # max_norm=inf: measures the norm for logging, changes nothing
            return effects + [scope.event(CLIP, clip.flavour, call)]
        if unscale_call(call):
            receiver = dotted(call.func.value) or ""  # type: ignore[attr-defined]
            return effects + [scope.event(UNSCALE, scope.subst(receiver)[0] if receiver else "", call)]
        scaler = scaled_backward_scaler(call)
        if scaler is not None and any(isinstance(e, Event) and e.kind == BACKWARD for e in effects):
            text = dotted(scaler)
            bound = scope.subst(text)[0] if text else ""
            return [scope.event(SCALED, bound, call)] + list(effects)
        if not effects and _scales_a_loss(call, scope):
            # `scaled = scaler.scale(loss)` ... `scaled.backward()`: the gradients to come are scaled
            text = dotted(call.func.value) or ""  # type: ignore[attr-defined]
            return [scope.event(SCALED, scope.subst(text)[0], call)]
        if not effects:
            return self._unknown_effects(call, scope)
        if len(effects) == 1 and isinstance(effects[0], Event) and effects[0].kind == BACKWARD:
            # `self.backward(loss)`: a method of this class named like a backward, which the facts
            # layer takes as one; it may scale the loss inside
            inner = self._scaler_inside(call, scope)
            if inner is not None:
                return [scope.event(SCALED, inner, call)] + list(effects)
        return effects

    def _scaler_inside(self, call: cst.Call, scope: Scope) -> Optional[str]:
        text = dotted(call.func)
        if not text or "." not in text or backward_call(call, scope.facts.imports) is None:
            return None
        saved = self.wants_project
        resolved = self._resolve_function(text, scope)
        self.wants_project = saved
        if resolved is None:
            return None
        inline = resolved(call)
        for inner in inline.scope.facts.summary(inline.body)[0]:
            scaler = scaled_backward_scaler(inner)
            if scaler is not None:
                scaler_text = dotted(scaler)
                return inline.scope.subst(scaler_text)[0] if scaler_text else ""
        return None

    def _unknown_effects(self, call: cst.Call, scope: Scope) -> List[Event]:
        """Calls the facts layer does not track: `engine.step()` (may step), a call we cannot see
        into that is handed a scaler (may unscale)."""
        func = call.func
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            if method == "step" or method.endswith("_step") or method.startswith("step_"):
                text = dotted(func.value)
                if text is None:
                    return []
                _, kind = scope.kind_of(text)
                lower = text.rsplit(".", 1)[-1].lower()
                if kind in (ENGINE, OPTIMIZER, None) and not any(h in lower for h in _NOT_STEPPERS):
                    if backward_call(call, scope.facts.imports) is None:
                        return [scope.event(MAYBE_STEP, text, call)]
                return []
            if "unscale" in method.lower():
                return [scope.event(MAYBE_UNSCALE, "", call)]
        text = dotted(func)
        if text is not None and "unscale" in text.rsplit(".", 1)[-1].lower():
            return [scope.event(MAYBE_UNSCALE, "", call)]
        for arg in call.args:
            arg_text = dotted(arg.value)
            if arg_text is not None and "scaler" in arg_text.rsplit(".", 1)[-1].lower():
                if text is None or self._resolve_function(text, scope) is None:
                    return [scope.event(MAYBE_UNSCALE, "", call)]
        return []

    def expr_effects(self, expr: cst.CSTNode, scope: Scope):
        effects = super().expr_effects(expr, scope)
        if isinstance(expr, cst.BaseSmallStatement):
            read = reads_grad_statement(expr)
        else:
            read = reads_grad(expr)
        if read:
            effects = list(effects) + [scope.event(READ, "", expr)]
        return effects

    # -- which helpers to follow ----------------------------------------------------------------
    def relevant(self, inline: Inline, _seen: Optional[set] = None) -> bool:
        if self._plain.relevant(inline):
            return True
        return self._touches(inline, set())

    def _touches(self, inline: Inline, seen: set) -> bool:
        """Does the helper (transitively) clip, unscale, scale a backward or read a `.grad`?"""
        key = id(inline.body)
        cached = self._touching.get(key)
        if cached is not None:
            return cached
        if key in seen or len(seen) > 30:
            return False
        seen.add(key)
        facts = inline.scope.facts
        calls, _ = facts.summary(inline.body)
        result = reads_grad(inline.body)
        for call in calls:
            if result:
                break
            if clip_call(call, facts.imports) is not None or unscale_call(call):
                result = True
            elif scaled_backward_scaler(call) is not None:
                result = True
            else:
                text = dotted(call.func)
                resolved = self._resolve_function(text, inline.scope) if text else None
                if resolved is not None and self._touches(resolved(call), seen):
                    result = True
        self._touching[key] = result
        return result


def _scales_a_loss(call: cst.Call, scope: Scope) -> bool:
    """`scaler.scale(loss)` (not as the receiver of `.backward()`, handled with the backward) of a
    GradScaler: known from its construction or its name."""
    func = call.func
    if not (isinstance(func, cst.Attribute) and func.attr.value == "scale" and len(call.args) == 1):
        return False
    text = dotted(func.value)
    if text is None:
        return False
    _, kind = scope.kind_of(text)
    return kind == SCALER or (kind is None and "scaler" in text.rsplit(".", 1)[-1].lower())


# ---------------------------------------------------------------------------------------------
# The loops and their graphs
# ---------------------------------------------------------------------------------------------


@dataclass
class LoopInfo:
    """One analysed loop (or a framework-driven loop body) and its graph of ordered events."""

    loop: cst.CSTNode
    graph: LoopGraph
    events: List[Event]
    body_nodes: FrozenSet[int]  # ids of every node written inside the loop (reports stay in it)


def ordering_loops(ctx) -> List[LoopInfo]:
    """The module's loops that step an optimizer or run a backward, with their ordered events.
    (Shared by the ordering rules through `Context.ordering_loops`, built once per file.)"""
    return list(_build_loops(ctx))


def _build_loops(ctx) -> Iterator[LoopInfo]:
    facts = ctx.training_facts
    local = OrderingAnalyzer(facts, ctx.options, None)
    project: Optional[Project] = None
    for loop, _cls, _func, build, scope in candidate_loops(facts, local):
        try:
            local.wants_project = False
            local._plain.wants_project = False
            graph = build(loop, local, scope)
            events = list(graph.events())
            if not any(e.kind in (STEP, BACKWARD) for e in events):
                continue
            if local.needs_project:
                if project is None:
                    project = Project(ctx.path, ctx.options.project_root)
                graph = build(loop, OrderingAnalyzer(facts, ctx.options, project), scope)
                events = list(graph.events())
        except (TooLarge, RecursionError):
            continue
        yield LoopInfo(loop=loop, graph=graph, events=events, body_nodes=_ids_within(loop))


def _ids_within(node: cst.CSTNode) -> FrozenSet[int]:
    # The analysis walk (no whitespace or punctuation nodes: no event is one) off the module's
    # index; LibCST's `children` rebuilds every node's child list through its visitor machinery.
    return frozenset(map(id, walk(node)))


def report_node(event: Event, loop: LoopInfo) -> Optional[cst.CSTNode]:
    """The node a finding about `event` points to in this loop: the outermost call site written
    in the loop that leads to it (the event itself when it is written in the loop)."""
    for node, local in event.chain:
        if local and id(node) in loop.body_nodes:
            return node
    return None


# ---------------------------------------------------------------------------------------------
# Clears: definite, mirrored, or unknown
# ---------------------------------------------------------------------------------------------

DEFINITE = "definite"  # zero_grad(), p.grad = None, p.grad.zero_(), a configured clear helper
MIRROR = "mirror"  # the branch of `if p.grad is not None: <clear>` that has nothing to clear
GATE = "gate"  # accelerate's accumulate(): gates the prepared optimizer's zero_grad/step
UNKNOWN = "unknown"  # a call we cannot see into, taken to clear by the facts layer


def clear_kind(event: Event, analyzer_options=None) -> str:
    """How sure it is that a CLEAR event clears gradients."""
    node = event.node
    if isinstance(node, cst.Call):
        if wiping_call(node):
            return DEFINITE
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "accumulate":
            return GATE
        names = tuple(getattr(analyzer_options, "clear_functions", ()) or ())
        text = dotted(func)
        if text and names and any(text == n or text.endswith("." + n) or n.endswith("." + text) for n in names):
            return DEFINITE
        return UNKNOWN
    if isinstance(node, cst.BaseSmallStatement):
        return DEFINITE if clearing_assignment(node) else UNKNOWN
    if isinstance(node, cst.BaseExpression):
        return MIRROR  # the test of `if p.grad is None` / `is not None`
    return UNKNOWN


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------

State = Tuple


@dataclass(frozen=True)
class Finished:
    """How a path ended: `verdict` (rule-defined words), and the events that decided it."""

    verdict: str
    culprit: Optional[Event] = None
    witness: Optional[Event] = None

    def key(self) -> tuple:
        return (self.verdict, id(self.culprit), id(self.witness))


Outcome = Finished


def _enter(node: Node, decisions: FrozenSet) -> Optional[FrozenSet]:
    """Branch decisions after entering `node` (the graph's correlated conditions: the same
    condition takes the same branch until a name in it is assigned), or None if the node
    contradicts an earlier decision."""
    if node.kills and decisions:
        kills = node.kills
        decisions = frozenset(
            d for d in decisions if not any(n == k or n.startswith(k + ".") for n in d[1] for k in kills)
        )
    if node.decide is not None:
        key, names, value = node.decide
        for d in decisions:
            if d[0] == key:
                return decisions if d[2] == value else None
        decisions = decisions | {(key, names, value)}
    return decisions


def explore(
    graph: LoopGraph,
    start: State,
    on_event: Callable[[State, Event], object],
    on_leave: Optional[Callable[[State], Optional[Outcome]]] = None,
    on_cross: Optional[Callable[[State], State]] = None,
    on_edge: Optional[Callable[[State, Node, Node], Optional[State]]] = None,
) -> Optional[List[Outcome]]:
    """Walk every path of the loop from its header, around the back edge as often as needed.

    `on_event(state, event)` returns the next state (a tuple) or an `Outcome` (a `Finished`),
    which ends the path; `on_leave(state)` may give an outcome for a path that leaves the loop
    (break, return, a raise nobody catches); `on_cross(state)` updates the state on the back edge;
    `on_edge(state, node, succ)` gives the state on the edge node -> succ, or None where no path
    can take that edge.
    Returns the outcomes of all paths (each distinct one once), or None when the search grew past
    MAX_STATES (the caller stays silent).
    """
    outcomes: List[Outcome] = []
    seen_outcomes: set = set()
    first = _enter(graph.header, frozenset())
    if first is None:
        return []
    queue = deque([(graph.header, start, first)])
    seen = {(id(graph.header), start, first)}
    while queue:
        node, state, decisions = queue.popleft()
        finished = False
        for event in node.events:
            result = on_event(state, event)
            if isinstance(result, Finished):
                key = result.key()
                if key not in seen_outcomes:
                    seen_outcomes.add(key)
                    outcomes.append(result)
                finished = True
                break
            state = result  # type: ignore[assignment]
        if finished:
            continue
        if not node.succ and on_leave is not None:
            result = on_leave(state)
            if result is not None and result.key() not in seen_outcomes:
                seen_outcomes.add(result.key())
                outcomes.append(result)
        for succ in node.succ:
            next_state = on_cross(state) if (on_cross is not None and succ is graph.header) else state
            if on_edge is not None:
                edged = on_edge(next_state, node, succ)
                if edged is None:
                    continue
                next_state = edged
            entered = _enter(succ, decisions)
            if entered is None:
                continue
            key = (id(succ), next_state, entered)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > MAX_STATES:
                return None
            queue.append((succ, next_state, entered))
    return outcomes


def events_of(loop: LoopInfo, *kinds: str) -> List[Event]:
    """The loop's events of these kinds, each distinct event once, in graph order."""
    seen: set = set()
    out: List[Event] = []
    for event in loop.events:
        if event.kind in kinds and id(event) not in seen:
            seen.add(id(event))
            out.append(event)
    return out
