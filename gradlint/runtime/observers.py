"""Observations for the step-order and graph-lifetime rules, made alongside the GL001-GL003 ones.

Per thread, next to its `GradState`:

* **Clipping** (`torch.nn.utils.clip_grad_norm_` / `clip_grad_value_`, wrapped): at the clip, are
  the gradients still scaled — an enabled `GradScaler` scaled a loss since its last `update()` and
  has not `unscale_`d the optimizer holding them? Afterwards, does an optimizer step use the
  clipped gradients unchanged, or are they changed (a backward, a clear) before any step does?
* **Clears** dropping gradients no step used yet, and steps that then saw only such gradients
  (counted by `GradState`; the clear's call site is worked out only when it drops something).
* **Graphs kept alive**: the root of a sample of backward calls gets a sentinel in its
  `grad_fn.metadata`; a sentinel still alive when its call site has run three more backwards means
  something (a running sum, a list) holds the graph past the iteration.
* **Leaf roots**: a backward whose roots are all leaves with no `grad_fn` reaches no parameter.
* **Second-time errors**: a backward that raises "backward through the graph a second time", and
  whether an optimizer step ran since the previous call of the same site (state carried over).

Nothing is kept alive: sentinels and parameters are held by weak references.
"""

from __future__ import annotations

import functools
import math
import re
import weakref
from typing import Any, Dict, List, Optional, Tuple

from gradlint.runtime.events import BACKWARD_FAILED, INPLACE_AFTER_STEP
from gradlint.runtime.events import (CLEAR_DISCARDED, CLIP_BEFORE_ASSIGNED, CLIP_CALLS, CLIP_ON_SCALED, CLIP_USED,
                                     CLIP_WASTED, FREED_GRAPH, KEPT_AT_ONCE, KEPT_GRAPH, KEPT_UPSTREAM,
                                     KEPT_UNSTEPPED, KEPT_UPSTREAM_AT_ONCE, SECOND_TIME, SECOND_TIME_AFTER_STEP,
                                     BackwardSite)
from gradlint.runtime.gradstate import GradState

WATCH_ALL_ROOTS = 64  # backward calls per site whose graph lifetime is watched before sampling
SAMPLE_ROOTS_EVERY = 16
# After those, the nodes upstream of the root (a walk of up to UPSTREAM_NODES, ~50 us) are watched
# on 1 call in this many: a store that piles outputs up keeps every watched group alive, so two
# are alive at once within twice this many calls however rarely it is sampled.
SAMPLE_UPSTREAM_EVERY = 64
_SECOND_TIME_TEXT = "backward through the graph a second time"
_INPLACE_TEXT = "has been modified by an inplace operation"
# "[torch.FloatTensor [24, 3]] is at version 2" (a leaf), "[torch.FloatTensor [2, 10]], which is
# output 0 of SigmoidBackward0, is at version 2" (an op's output: no weight)
_WEIGHT_VIEW = re.compile(r"output \d+ of (T|Transpose|Permute|View|Alias|Expand|Unsqueeze|Squeeze|AsStrided)"
                          r"(Backward\d*)?\b")
_INPLACE_TENSOR = re.compile(r"\[torch\.[\w.]+ \[([\d, ]*)\]\]([^\[\]]{0,120}?) is at version")
_SENTINEL_KEY = "_gradlint_lifetime"
_UPSTREAM_KEY = "_gradlint_upstream"
UPSTREAM_DEPTH = 8  # edges from the root within which the nodes an iteration made are watched
UPSTREAM_NODES = 32  # of those, at most this many per call
UPSTREAM_HELD = 8  # of the groups still alive past their iteration, at most this many watched on


class _Sentinel:
    """Lives exactly as long as the graph node whose metadata holds it."""

    __slots__ = ("__weakref__",)


def _outlived(index: int, stepped: int, calls: int, steps: int) -> bool:
    """Is a graph watched at a site's call `index`, after `stepped` steps, past its iteration now
    (at call `calls`, after `steps` steps): two calls and two optimizer steps later?"""
    return index <= calls - 3 and steps >= stepped + 2


def _freed(site: BackwardSite, _ref: Any) -> None:
    site.bump(FREED_GRAPH)


class _PendingClip:
    __slots__ = ("site", "entries")

    def __init__(self, site: BackwardSite, entries: list) -> None:
        self.site = site
        self.entries = entries  # [(weakref(param), weakref(grad), grad version after the clip)]


class ScalerRecord:
    """What we track of one GradScaler: whether it scaled a loss since its last update()."""

    __slots__ = ("ref", "scaled")

    def __init__(self, ref: weakref.ref) -> None:
        self.ref = ref
        self.scaled = False


def _scaler_unscaled(scaler, optimizer) -> bool:
    """Has `scaler` unscaled `optimizer`'s gradients in the current step?"""
    states = getattr(scaler, "_per_optimizer_states", None)
    if not isinstance(states, dict):
        return True  # unknown layout: say nothing
    state = states.get(id(optimizer))  # .get: the defaultdict must not grow
    if not isinstance(state, dict):
        return False
    stage = state.get("stage")
    return getattr(stage, "name", "") in ("UNSCALED", "STEPPED")


class Lifecycle:
    """One thread's clip, graph-lifetime, leaf-root and second-time observations."""

    def __init__(self, grads: GradState) -> None:
        self.grads = grads
        self.clips: List[_PendingClip] = []
        self.wasted: Dict[int, BackwardSite] = {}  # clip sites with clips wasted since the last step
        # id(site) -> watched roots: (the site's call count, the thread's step count, sentinel ref)
        self.roots: Dict[int, List[Tuple[int, int, weakref.ref]]] = {}
        self.stepping = False  # inside an optimizer step (a closure's backward calls run there)
        self.calls: Dict[int, int] = {}  # id(site) -> calls seen (for the roots' age)
        self.last_steps: Dict[int, int] = {}  # id(site) -> thread's step count at its last call
        self.scalers: Dict[int, ScalerRecord] = {}  # id(GradScaler) -> record
        # id(site) -> watched nodes near its roots: (call count, step count, their sentinels)
        self.upstream: Dict[int, List[Tuple[int, int, List[weakref.ref]]]] = {}
        self.made_after: Dict[int, int] = {}  # id(site) -> autograd sequence number at its last call

    def scaler(self, scaler) -> ScalerRecord:
        key = id(scaler)
        record = self.scalers.get(key)
        if record is None or record.ref() is not scaler:
            record = self.scalers[key] = ScalerRecord(weakref.ref(scaler))
            if len(self.scalers) > 64:  # drop dead scalers
                self.scalers = {k: r for k, r in self.scalers.items() if r.ref() is not None}
        return record

    # ------------------------------------------------------------------ backward
    def before_backward(self, site: BackwardSite, roots: list, torch) -> None:
        key = id(site)
        calls = self.calls.get(key, 0) + 1
        self.calls[key] = calls
        steps = self.grads.steps
        watched = self.roots.get(key) if not self.stepping else None
        if watched:
            # Roots whose graph is still alive two iterations later: kept past the iteration. An
            # iteration ends at an optimizer step (several backward calls may feed one step: task
            # losses on a shared trunk, micro-batches kept for logging until the step); where
            # nothing steps, nothing is said.
            # An old root is counted once (its index made negative) and watched on while it
            # lives: how many are alive at once tells graphs piling up (a history, a running sum)
            # from one kept at a time (the best loss so far).
            alive = []
            at_once = unstepped = 0
            for index, stepped, ref in watched:
                if ref() is None:
                    continue
                if index < 0:
                    at_once += 1
                elif _outlived(index, stepped, calls, steps):
                    site.bump(KEPT_GRAPH)
                    at_once += 1
                    index = -1
                elif not steps and index <= calls - 3:
                    unstepped += 1  # no optimizer has stepped (a hand-written update): counted by calls
                alive.append((index, stepped, ref))
            self.roots[key] = alive
            site.raise_to(KEPT_AT_ONCE, at_once)
            site.raise_to(KEPT_UNSTEPPED, unstepped)
        if self.stepping:
            return  # an optimizer's step closure (LBFGS): the optimizer holds its loss until the step ends
        kept = self.upstream.get(key)
        if kept:
            # As for the roots: an old group still alive is counted once, then watched on (at
            # most UPSTREAM_HELD of them) to tell a store that piles them up from one that keeps
            # the latest (`self.last_out = out`) or the best so far.
            younger = []
            held = 0
            for index, stepped, refs in kept:
                if index < 0:
                    if any(ref() is not None for ref in refs):
                        held += 1
                        younger.append((index, stepped, refs))
                elif _outlived(index, stepped, calls, steps):
                    if any(ref() is not None for ref in refs):
                        site.bump(KEPT_UPSTREAM)
                        if held < UPSTREAM_HELD:
                            held += 1
                            younger.append((-1, stepped, refs))
                else:
                    younger.append((index, stepped, refs))
            self.upstream[key] = younger
            site.raise_to(KEPT_UPSTREAM_AT_ONCE, held)
        watch = calls <= WATCH_ALL_ROOTS or calls % SAMPLE_ROOTS_EVERY == 0
        # The upstream walk: every call of the first WATCH_ALL_ROOTS, then 1 in
        # SAMPLE_UPSTREAM_EVERY, and the call before each of those (it notes where its iteration's
        # nodes end); most calls are neither.
        upstream = calls <= WATCH_ALL_ROOTS or calls % SAMPLE_UPSTREAM_EVERY == 0
        if upstream or calls + 1 <= WATCH_ALL_ROOTS or (calls + 1) % SAMPLE_UPSTREAM_EVERY == 0:
            self._watch_upstream(key, calls, steps, roots, torch, upstream)
        if watch:
            for root in roots:
                node = getattr(root, "grad_fn", None) if isinstance(root, torch.Tensor) else None
                if node is None:
                    continue
                try:
                    metadata = node.metadata
                except Exception:
                    continue
                if not isinstance(metadata, dict) or _SENTINEL_KEY in metadata:
                    continue
                sentinel = _Sentinel()
                metadata[_SENTINEL_KEY] = sentinel
                ref = weakref.ref(sentinel, functools.partial(_freed, site))
                self.roots.setdefault(key, []).append((calls, steps, ref))
                break  # one root per call is enough

    def _watch_upstream(self, key: int, calls: int, steps: int, roots: list, torch, watch: bool) -> None:
        """Sentinels on the nodes within UPSTREAM_DEPTH of the first root's node that this
        iteration made (autograd numbers nodes in the order they are made: those after the site's
        previous backward), parameters' accumulators aside: a stored output or component loss keeps
        its node alive however the root's own node fares. Nothing on a site's first call (what
        the iteration made is not known yet), nor on a node another call already watches. Every
        call of the first WATCH_ALL_ROOTS is watched (`watch`), then 1 in SAMPLE_UPSTREAM_EVERY;
        called also for the call before a watched one, which only notes where its iteration's
        nodes end."""
        node = None
        for root in roots:
            node = getattr(root, "grad_fn", None) if isinstance(root, torch.Tensor) else None
            if node is not None:
                break
        if node is None:
            return
        try:
            made_after = self.made_after.get(key)
            self.made_after[key] = node._sequence_nr()
        except Exception:
            return
        if made_after is None or not watch:
            return
        if calls > WATCH_ALL_ROOTS:
            self.made_after.pop(key, None)  # noted again by the call before the next watched one
        refs: List[weakref.ref] = []
        level = [child for child, _ in node.next_functions if child is not None]
        seen = {id(node)}
        keep = [node]  # holds the walked nodes alive while their ids are in `seen`
        for _ in range(UPSTREAM_DEPTH):
            below: list = []
            for current in level:
                if id(current) in seen or len(refs) >= UPSTREAM_NODES:
                    continue
                seen.add(id(current))
                keep.append(current)
                if getattr(current, "variable", None) is not None:
                    continue  # a leaf's accumulator: it lives as long as the leaf (a parameter)
                try:
                    if current._sequence_nr() <= made_after:
                        continue  # made before this iteration (built once before the loop, say)
                    metadata = current.metadata
                except Exception:  # nodes without a sequence number or metadata
                    continue
                if isinstance(metadata, dict) and _UPSTREAM_KEY not in metadata:
                    sentinel = metadata[_UPSTREAM_KEY] = _Sentinel()
                    refs.append(weakref.ref(sentinel))
                below.extend(child for child, _ in current.next_functions if child is not None)
            level = below
        if refs:
            self.upstream.setdefault(key, []).append((calls, steps, refs))

    def _stepped_weight(self, text: str) -> bool:
        """Does the tensor an "inplace operation" error names (by type and shape only) have the shape
        of a parameter some optimizer holds? Then the write was most likely the step's update of a
        weight an earlier graph saved; an activation changed in place within the iteration rarely
        shares a weight's shape."""
        match = _INPLACE_TENSOR.search(text)
        if match is None:
            return False
        made_by = match.group(2)
        if "output" in made_by and _WEIGHT_VIEW.search(made_by) is None:
            return False  # an op's result (an activation), not a weight or a view of one
        try:
            shape = tuple(int(n) for n in match.group(1).replace(" ", "").split(",") if n)
        except ValueError:
            return False
        shapes = {shape, shape[::-1]}  # `linear` saves its weight transposed
        for adopted in list(self.grads.optimizers.values()):
            for ref, _ in adopted.pairs:
                param = ref()
                if param is not None and tuple(param.shape) in shapes:
                    return True
        return False

    def after_backward(self, site: BackwardSite, error: Optional[BaseException], accumulated: bool) -> None:
        key = id(site)
        steps = self.grads.steps
        previous = self.last_steps.get(key)
        self.last_steps[key] = steps
        if error is not None:
            failed_before = site.count(BACKWARD_FAILED)
            site.bump(BACKWARD_FAILED)
            text = str(error) if isinstance(error, RuntimeError) else ""
            after_step = previous is not None and previous != steps
            if _SECOND_TIME_TEXT in text:
                site.bump(SECOND_TIME)
                if after_step:
                    site.bump(SECOND_TIME_AFTER_STEP)
            elif _INPLACE_TEXT in text and after_step and not failed_before and self._stepped_weight(text):
                site.bump(INPLACE_AFTER_STEP)
        if accumulated and self.clips:
            self.settle_clips(None)

    # ------------------------------------------------------------------ clipping
    def clipped(self, site: BackwardSite, params: list, limit: Any) -> None:
        """A clip at `site` ran on `params` (already clipped)."""
        torch = self.grads.torch
        known = self.grads.known
        for param in params:
            grad = param.grad if isinstance(param, torch.Tensor) else None
            if grad is None:
                continue
            state = known(param)
            if state is not None:  # changed in place by the clip (even by 1.0), not cleared: GL005
                state.clip_version = grad._version
        if isinstance(limit, (int, float)) and math.isinf(limit):
            return  # max_norm=inf: computes the norm for logging, changes nothing
        entries = []
        ids = set()
        for param in params:
            if isinstance(param, torch.Tensor):
                grad = param.grad
                if grad is not None:
                    entries.append((weakref.ref(param), weakref.ref(grad), grad._version))
                    ids.add(id(param))
        if not entries:
            return
        site.bump(CLIP_CALLS)
        scaled = False
        for record in list(self.scalers.values()):
            scaler = record.ref()
            if scaler is None or not record.scaled or not getattr(scaler, "_enabled", False):
                continue
            for adopted in list(self.grads.optimizers.values()):
                optimizer = adopted.ref()
                if optimizer is None or not any(id(ref()) in ids for ref, _ in adopted.pairs):
                    continue
                if not _scaler_unscaled(scaler, optimizer):
                    scaled = True
        if scaled:
            site.bump(CLIP_ON_SCALED)
        self.settle_clips(None)
        self.clips.append(_PendingClip(site, entries))

    def settle_clips(self, stepped: Optional[set]) -> None:
        """Decide pending clips: used when the optimizer stepping now (`stepped`: ids of its
        parameters) holds their gradients unchanged; wasted when they changed first."""
        keep = []
        for clip in self.clips:
            verdict = None
            for param_ref, grad_ref, version in clip.entries:
                param = param_ref()
                if param is None:
                    continue
                grad = param.grad
                if grad is None or grad is not grad_ref() or grad._version != version:
                    verdict = CLIP_WASTED
                    break
                if stepped is not None and id(param) in stepped:
                    verdict = CLIP_USED
            if verdict is None:
                keep.append(clip)
            else:
                clip.site.bump(verdict)
                if verdict == CLIP_WASTED:
                    self.wasted[id(clip.site)] = clip.site
        self.clips = keep

    def before_step(self, adopted, assigned: Optional[bool] = None) -> None:
        """An optimizer step begins (`assigned` given: its pre-hook; whether it uses gradients
        assigned by hand). Clips whose gradients were changed since this thread's previous step
        and before one on gradients assigned by hand may have been read first (per-sample clips
        summed by hand, as DP-SGD does): each such clip site is marked so."""
        if self.clips:
            self.settle_clips({id(ref()) for ref, _ in adopted.pairs})
        if assigned is None or not self.wasted:
            return
        if assigned:
            for site in self.wasted.values():
                site.bump(CLIP_BEFORE_ASSIGNED)
        self.wasted.clear()

    def after_clear(self, site: Optional[BackwardSite]) -> None:
        if site is not None:
            site.bump(CLEAR_DISCARDED)
        if self.clips:
            self.settle_clips(None)
