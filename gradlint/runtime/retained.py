"""Retained graphs (GL002, GL008): does a later backward run a graph kept by `retain_graph=True`?

After a backward that keeps its graph, pre-hooks go on the nodes it ran that hold saved tensors
(restricted to paths to `inputs=` when given). A later backward that runs one shows the retain was
needed (GL002 refuted) — and when that later backward is the *same* call site after an optimizer
step, the graph was carried from one iteration into the next (GL008's observation). The hooks are
held by the graph (the handles keep only a weakref), so they die with it.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, Optional

from gradlint.runtime.events import CARRIED_REUSE, FRESH_RETAINED, BackwardSite
from gradlint.runtime.gradstate import GRAPH_LIMIT

_SAVED_TYPES: Dict[type, bool] = {}
_SITES_KEY = "_gradlint_retained_by"  # in a node's metadata: ids of the sites whose retained graphs held it


class Retained:
    """One retained graph: the hooks placed on it. Referenced only by those hooks' closures, so it
    dies with the graph; the tracer keeps it in a WeakSet to remove the hooks on exit."""

    __slots__ = ("site", "handles", "reused", "carried", "steps_at", "grads", "__weakref__")

    def __init__(self, site: BackwardSite, grads: Any, steps_at: int) -> None:
        self.site = site
        self.handles: list = []
        self.reused = False
        self.carried = False
        self.grads = grads  # the GradState of the thread that retained it (its step count)
        self.steps_at = steps_at


def holds_saved(node) -> bool:
    """Does this kind of node keep saved tensors (which retain_graph=True keeps alive)?"""
    kind = type(node)
    found = _SAVED_TYPES.get(kind)
    if found is None:
        names = dir(kind)
        # Generated nodes expose each saved tensor as `_raw_saved_*`; custom Functions have
        # `saved_tensors`; CopySlices (in-place ops on views) wraps a node that may save some.
        found = (any(n.startswith("_raw_saved_") for n in names) or "saved_tensors" in names
                 or kind.__name__ == "CopySlices")
        _SAVED_TYPES[kind] = found
    return found


def executed_nodes(torch, roots: list, inputs: list) -> list:
    """Nodes of the graph the backward ran: all reachable ones, or with `inputs=` those on a
    path to an input."""
    order: list = []
    seen: Dict[int, Any] = {}
    todo = list(roots)
    while todo and len(seen) < GRAPH_LIMIT:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        order.append(node)
        for child, _ in node.next_functions:
            if child is not None:
                todo.append(child)
    if not inputs:
        return order
    targets: set = set()
    for tensor in inputs:
        if isinstance(tensor, torch.Tensor):
            if tensor.grad_fn is not None:
                targets.add(id(tensor.grad_fn))
            else:
                targets.add(("leaf", id(tensor)))
    reaches: Dict[int, bool] = {}

    def reach(node) -> bool:
        # Iterative post-order: does any path from `node` end at an input?
        stack = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            key = id(current)
            if key in reaches:
                continue
            leaf = getattr(current, "variable", None)
            if leaf is not None and ("leaf", id(leaf)) in targets:
                reaches[key] = True
                continue
            children = [c for c, _ in current.next_functions if c is not None]
            if not expanded:
                stack.append((current, True))
                stack.extend((c, False) for c in children if id(c) not in reaches)
            else:
                reaches[key] = any(id(c) in targets or reaches.get(id(c), False) for c in children)
        return reaches.get(id(node), False)

    return [node for node in order if id(node) not in targets and reach(node)]


def hook_retained(tracer, site: BackwardSite, roots: list, inputs: list, grads: Any,
                  current_call: Callable[[], Optional[Any]], registry: "weakref.WeakSet") -> None:
    """Hook the retained graph of a backward at `site`; `current_call()` gives the backward in
    progress when a hook fires (whatever thread runs it)."""
    if not roots:
        return
    record = Retained(site, grads, grads.steps)
    # A graph built once before the loop and run by every iteration (`h = tanh(z)` outside it) is
    # in every retained graph of the site; state carried from iteration to iteration is new in each.
    # So only a node not in any graph the site retained before, run again by the same site after a
    # step, shows carried state; on the site's first graph nothing can be told apart, and nothing
    # is counted.
    first = id(site) not in tracer.retained_sites
    tracer.retained_sites.add(id(site))
    mark = id(site)
    fresh: list = []  # holds True once a node of this graph is new to the site

    def is_new(node) -> bool:
        """Not in a graph this site retained before (node ids are reused once a graph dies, so
        the mark lives in the node's own metadata, which dies with it)."""
        try:
            metadata = node.metadata
        except Exception:
            return False
        if not isinstance(metadata, dict):
            return False
        marks = metadata.get(_SITES_KEY)
        if marks is None:
            metadata[_SITES_KEY] = marks = set()
        elif mark in marks:
            return False
        marks.add(mark)
        if first:
            return False
        if not fresh:
            fresh.append(True)
        return True

    def ran_again(grad_outputs):
        # A later backward runs a node of the retained graph: the retain was needed.
        if record.reused or not tracer.active:
            return None
        try:
            record.reused = True
            site.retained_reused += 1
            call = current_call()
            if site.reused_by is None:
                site.reused_by = call.stack if call is not None else ()
        except Exception:
            tracer.count_error()
        return None

    def ran_again_new(grad_outputs):
        ran_again(grad_outputs)
        if record.carried or not tracer.active:
            return None
        try:
            call = current_call()
            if call is not None and call.site is site and record.grads.steps != record.steps_at:
                record.carried = True
                site.bump(CARRIED_REUSE)
        except Exception:
            tracer.count_error()
        return None

    handles: List[Any] = record.handles
    saved_types = _SAVED_TYPES
    if inputs:
        for node in executed_nodes(tracer.torch, roots, inputs):
            if holds_saved(node):
                handles.append(node.register_prehook(ran_again_new if is_new(node) else ran_again))
    else:
        # One pass over the graph: every node the backward ran that holds saved tensors.
        seen: set = set()
        keep = []  # holds the walked nodes alive while their ids are in `seen`
        todo = list(roots)
        while todo and len(seen) < GRAPH_LIMIT:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            keep.append(node)
            holds = saved_types.get(type(node))
            if holds is None:
                holds = holds_saved(node)
            if holds:
                handles.append(node.register_prehook(ran_again_new if is_new(node) else ran_again))
            for child, _ in node.next_functions:
                if child is not None:
                    todo.append(child)
    if fresh:
        site.bump(FRESH_RETAINED)
    if record.handles:
        with tracer.lock:
            registry.add(record)
