"""Gradient clipping that cannot do its job (the clip-grad-misuse rule's analysis).

(a) With mixed precision, `scaler.scale(loss).backward()` leaves gradients multiplied by the loss
scale. A torch clip on them before `scaler.unscale_(optimizer)` compares the scaled norm with the
threshold. Found when on some path from a scaled backward of a GradScaler that is not switched off
(`GradScaler(enabled=False)` is) to the optimizer step, a clip runs before any unscale_.
(b) A clip that no step follows before the gradients are cleared or added to by the next backward
(written after `optimizer.step()`, or before `loss.backward()`) changes gradients nobody uses.

Scale-aware clipping (`accelerator.clip_grad_norm_`, Fabric's and Lightning's `clip_gradients`)
unscales by itself and is only ever (b); a clip with `max_norm=float("inf")` only measures the norm;
apex's `amp.scale_loss` block and DeepSpeed engines unscale before the code sees the gradients. The
paths are those of the shared loop graphs (`gradlint.analysis.ordering`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.grad_calls import CLIP_TORCH, SCALER_OFF, scaled_backward_scaler, scaler_states
from gradlint.analysis.names import dotted
from gradlint.analysis.ordering import (
    ALL,
    BACKWARD,
    CLEAR,
    CLIP,
    DEFINITE,
    GATE,
    MAYBE_STEP,
    MAYBE_UNSCALE,
    SCALER_IDLE,
    MIRROR,
    SCALED,
    STEP,
    UNSCALE,
    Event,
    Finished,
    LoopInfo,
    clear_kind,
    events_of,
    explore,
    report_node,
)
from gradlint.analysis.tree import walk
from gradlint.findings import Edit, Fix

SCALED_CLIP = "scaled"  # (a)
ADDED = "added"  # (b): the next backward adds to the clipped gradients before any step
CLEARED = "cleared"  # (b): they are cleared before any step


@dataclass(frozen=True)
class ClipProblem:
    """A clip that cannot work: where to report it, why, and the events that show it.

    `scaled`/`step` are the scaled backward and the step it precedes (a); `witness` is the
    backward or clear that loses the clipped gradients (b); `unscale` is the call to insert
    before the clip (a), and `fix` the edit doing so when one is safe enough to offer."""

    node: cst.CSTNode
    reason: str
    scaled: Optional[Event] = None
    step: Optional[Event] = None
    witness: Optional[Event] = None
    unscale: str = ""
    fix: Optional[Fix] = None
    scaler: str = ""  # the scaler as written where the clip is (a)


def clip_problems(ctx) -> List[ClipProblem]:
    """Every clip of the file that cannot work, once each."""
    reported: Dict[int, ClipProblem] = {}
    states: Optional[Dict[str, str]] = None
    for loop in ctx.ordering_loops:
        clips = events_of(loop, CLIP)
        if not clips or not any(e.kind == STEP for e in loop.events):
            continue
        scaled = events_of(loop, SCALED)
        if scaled and states is None:
            states = scaler_states(ctx.module, ctx.imports)
        for backward in scaled:
            if (states or {}).get(backward.target) == SCALER_OFF:
                continue  # GradScaler(enabled=False): scale() and unscale_() do nothing
            for clip, step in _clips_on_scaled_gradients(loop, backward, ctx.options):
                node = clip.local_node()
                if id(node) not in reported:
                    scaler, optimizer = _unscale_names(backward, step, clip)
                    unscale = f"{scaler}.unscale_({optimizer})"
                    fix = _unscale_fix(ctx, loop, clip, backward, step, unscale)
                    reported[id(node)] = ClipProblem(node, SCALED_CLIP, backward, step, None, unscale, fix, scaler)
        for clip in clips:
            if id(clip.local_node()) in reported:
                continue
            lost = _unused_clip(loop, clip, ctx.options)
            if lost is not None:
                node = report_node(clip, loop)
                if node is not None and id(node) not in reported:
                    reported[id(node)] = ClipProblem(node, lost.verdict, witness=lost.witness)
    return list(reported.values())


def _unscale_names(scaled: Event, step: Event, clip: Event) -> Tuple[str, str]:
    """(scaler, optimizer) of the call to insert before `clip`, in the names written where the
    clip is: a method's own `self.scaler` rather than the `trainer.scaler` of the loop that calls
    it."""
    written = _written_names(scaled, step, clip)
    if written is not None:
        return written
    return scaled.target or "scaler", step.target if step.target != ALL else "optimizer"


def _written_names(scaled: Event, step: Event, clip: Event) -> Optional[Tuple[str, str]]:
    """(scaler, optimizer) as the code names them, when the scaled backward, the step and the
    clip sit in the same body of this file (reached through the same helper calls); else None."""
    path = [node for node, _ in clip.chain[:-1]]
    for event in (scaled, step, clip):
        if not event.chain[-1][1] or len(event.chain) != len(path) + 1:
            return None
        if any(a is not b for a, b in zip(path, (node for node, _ in event.chain[:-1]))):
            return None
    backward, stepping = scaled.node, step.node
    if not isinstance(backward, cst.Call) or not isinstance(stepping, cst.Call):
        return None
    scaler = scaled_backward_scaler(backward)
    if scaler is None and isinstance(backward.func, cst.Attribute):  # `scaler.scale(loss)` itself
        scaler = backward.func.value
    func = stepping.func
    if scaler is None or not isinstance(func, cst.Attribute) or func.attr.value != "step":
        return None
    optimizer = stepping.args[0].value if stepping.args else func.value  # `scaler.step(opt)`, `opt.step()`
    names = dotted(scaler), dotted(optimizer)
    return (names[0], names[1]) if names[0] and names[1] else None


# (a) -------------------------------------------------------------------------------------------


def _clips_on_scaled_gradients(loop: LoopInfo, scaled: Event, options) -> List[tuple]:
    """(clip, step) pairs: a torch clip reached from `scaled` with no unscale_ in between, then a
    step with no clear in between, on some path."""

    def on_event(state, event: Event):
        phase = state[0]
        if phase == "pre":
            return ("scaled", False, None) if event is scaled else state
        _, unscaled, clip = state
        kind = event.kind
        if kind in (UNSCALE, MAYBE_UNSCALE):
            return ("scaled", True, clip)
        if kind == SCALER_IDLE and event.target == scaled.target:
            return Finished("ok")  # the scaler is off on this path: nothing was scaled
        if kind == CLIP:
            if clip is None and not unscaled and event.target == CLIP_TORCH:
                return ("scaled", unscaled, event)
            return state
        if kind == STEP:
            return Finished("scaled-clip", clip, event) if clip is not None else Finished("ok")
        if kind == MAYBE_STEP:
            return Finished("ok")
        if kind == CLEAR and clear_kind(event, options) != GATE:
            return Finished("ok")  # the scaled gradients are gone
        return state

    outcomes = explore(loop.graph, ("pre",), on_event)
    if not outcomes:
        return []
    return [(o.culprit, o.witness) for o in outcomes if o.verdict == "scaled-clip"]


def _unscale_fix(ctx, loop: LoopInfo, clip: Event, scaled: Event, step: Event, unscale: str) -> Optional[Fix]:
    """Insert `scaler.unscale_(optimizer)` as its own statement just before the clip's statement.

    Offered only when the clip, the scaled backward and the step are written in the loop itself
    (their names mean the same there), the step names its optimizer, and the loop unscales
    nowhere (a second unscale_ per step raises)."""
    if step.target == ALL or not scaled.target:
        return None
    if not clip.chain[-1][1]:
        return None  # the clip is in another file
    if len(clip.chain) != 1:
        # in a helper: only a method of the same object, where `self.` names mean the same
        if not (scaled.target.startswith("self.") and step.target.startswith("self.")):
            return None
        if any(isinstance(node, cst.Call) and not (dotted(node.func) or "").startswith("self.")
               for node, _local in clip.chain[:-1]):
            return None
    elif any(len(e.chain) != 1 and not _named_in(e.target, loop.loop) for e in (scaled, step)):
        return None  # a name from inside a helper, perhaps its own
    if any(e.kind in (UNSCALE, MAYBE_UNSCALE) for e in loop.events):
        return None
    if len(clip.chain) == 1:
        statement = _statement_of(loop.loop, clip.node, (cst.FunctionDef, cst.ClassDef, cst.Lambda))
    else:
        statement = _statement_of(ctx.module, clip.node, (cst.Lambda,))
    if statement is None:
        return None
    where = ctx.position(statement).start
    start = ctx.offset(where.line, where.column)
    code = ctx.module.code
    line_start = ctx.offset(where.line, 0)
    indent = code[line_start:start]
    if indent.strip() == "":
        newline = _newline_at(code, start)
        text = f"{unscale}{newline}{indent}"
    else:
        text = f"{unscale}; "  # `a = 1; clip(...)` or `if x: clip(...)`: stay on the line
    edit = Edit(start, start, text)
    description = f"Insert `{unscale}` before the clip"
    fields = getattr(Fix, "__dataclass_fields__", {})
    if "applicability" in fields:
        return Fix(description, (edit,), applicability="unsafe")  # type: ignore[call-arg]
    return Fix(description, (edit,))


def _named_in(text: str, loop: cst.CSTNode) -> bool:
    """Does the loop itself use the name `text` starts with (so it means the same there)?"""
    head = text.split(".")[0]
    return head == "self" or any(type(n) is cst.Name and n.value == head for n in walk(loop))


def _statement_of(root: cst.CSTNode, call: cst.CSTNode, stop: tuple) -> Optional[cst.CSTNode]:
    """The small statement under `root` that contains `call`."""
    for node in walk(root, stop):
        if isinstance(node, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            for small in node.body:
                if any(inner is call for inner in walk(small)):
                    return small
    return None


def _newline_at(code: str, offset: int) -> str:
    end = code.find("\n", offset)
    if end > 0 and code[end - 1] == "\r":
        return "\r\n"
    if end < 0 and "\r" in code[offset:]:
        return "\r"
    return "\n"


# (b) -------------------------------------------------------------------------------------------


def _unused_clip(loop: LoopInfo, clip: Event, options) -> Optional[Finished]:
    """The way the clipped gradients are lost (cleared, or added to by a backward) when no path
    from `clip` reaches an optimizer step first; None when one does or we cannot tell."""

    def on_event(state, event: Event):
        if state[0] == "pre":
            return ("after",) if event is clip else state
        kind = event.kind
        if kind in (STEP, MAYBE_STEP, MAYBE_UNSCALE):
            return Finished("fine")
        if kind == BACKWARD:
            return Finished(ADDED, None, event)
        if kind == CLEAR:
            how = clear_kind(event, options)
            if how == GATE:
                return state
            if how in (DEFINITE, MIRROR):
                return Finished(CLEARED, None, event)
            return Finished("fine")  # a call we cannot see into: it may step
        return state

    def on_leave(state):
        return Finished("fine") if state[0] != "pre" else None  # the step may follow the loop

    outcomes = explore(loop.graph, ("pre",), on_event, on_leave=on_leave)
    if not outcomes or any(o.verdict == "fine" for o in outcomes):
        return None
    for verdict in (ADDED, CLEARED):
        for outcome in outcomes:
            if outcome.verdict == verdict:
                return outcome
    return None
