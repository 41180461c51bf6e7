"""Gradient state of the leaves one thread trains: what GL001 and GL005 are judged from.

Around an accumulating backward the gradients of watched leaves are snapshotted (object identity
and version counter). This tells, per leaf, whether the backward accumulated onto gradients that an
optimizer step already used and nobody cleared since (GL001). Judging "cleared" from the `.grad`
state (None, replaced, or changed in place since we last saw it) catches `p.grad = None` and
`p.grad.zero_()` as well as `zero_grad()`, and works for DTensor/FSDP2 parameters that have no
AccumulateGrad node. A leaf in no optimizer has no step to watch: its *value* changing between two
backwards that accumulate into it without a clear is a manual update with stale gradients.

Clears through `.data` (`p.grad.data.zero_()`, `p.grad.data = torch.zeros_like(p)`, common in older
code) leave the gradient's object and version counter as they were, so "untouched" alone cannot
tell them from a forgotten clear. A step is therefore called stale only after a content check: the
L1 norm of the gradient just before the backward accumulated onto it against its norm (the
*probe*) when the previous step used it. Zero or changed: it was cleared; equal: carried over.
Without a probe, or when the probe was zero (nothing to tell by), the step is *unsure*: never a
stale step, and never evidence of a clean one either. Probes are taken only for parameters once
judged at a step with carried-over gradients (and for all of an optimizer's parameters at its first
step, once), so correct code that clears with `zero_grad()` or `p.grad.zero_()` pays nothing per
step. The norms are queued on the device and read back (one sync) only when a step is about to use
such gradients; a leaf in no optimizer (a hand-written update) is checked right after the backward.

A step given a closure (`LBFGS`, `SGD.step(closure)`) runs its backward *inside* the step, and the
optimizer reads the gradients each time the closure returns (closures.py): what that backward
accumulated onto is judged then, and a stale step is counted once however many evaluations read
stale gradients.

Each thread has its own `GradState`: a thread only ever reads the gradients of leaves its own
backward calls wrote into and of optimizers it steps or clears, never those another thread's
autograd may be writing at the same moment. Leaves are held by weak reference.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from gradlint.runtime.events import (
    CLEAR_BEFORE_STEP,
    FRESH_CLEARED,
    MOVED_OTHERWISE,
    PARAM_GRADS,
    STALE_UPSTREAM,
    UNSURE_CARRY,
    BackwardSite,
    Observations,
    OptimizerStats,
)
from gradlint.runtime.handgrads import all_zero, assigned_after_clear, dropped_by_hand, zeroed_through_data
from gradlint.runtime.leafstate import CARRY, FRESH, STALE, STALE_AGAIN, UNSURE, Adopted, LeafState, carried
from gradlint.runtime.probes import compare, norms, sample, stepped_by_hand, updated, value_of

GRAPH_LIMIT = 50_000  # nodes walked at most per graph (discovery of leaves, retained graphs)
# An optimizer's first steps whose fresh gradients, kept as their backward left them by object and
# version, are checked for having been zeroed through `.data` (one host sync each)
ZEROED_CHECKED_STEPS = 8

class GradState:
    """One thread's watched leaves and optimizers, and the GL001/GL005 bookkeeping on them."""

    def __init__(self, obs: Observations, torch_module) -> None:
        self.obs = obs
        self.torch = torch_module
        # Weakly keyed by identity: id(leaf) -> (weakref(leaf), state); the weakref's callback drops
        # the entry when the leaf dies. (torch's WeakIdKeyDictionary does the same but costs about
        # a microsecond per lookup, which the per-step hot path cannot afford.)
        self.leaves: Dict[int, Tuple[weakref.ref, LeafState]] = {}
        self.watch: Optional[list] = None  # cached list(self.leaves.values())
        self.optimizers: Dict[int, Adopted] = {}  # id(optimizer) -> what we track of it
        self.pending_sites: Dict[int, BackwardSite] = {}  # sites run since the last step
        self.steps = 0  # steps this thread ran (GL008 asks whether one ran between two backwards)
        self.manual = 0  # manual updates seen (leaves in no optimizer whose value changed)
        self.marks = 0  # backwards that marked leaves stale or unsure (closures inside a step)
        # Provisionally stale leaves of the running backward and their norms just before it
        self.checks: Optional[List[Tuple[LeafState, Any]]] = None
        self.moved_otherwise = False  # the running backward found such leaves moved unlike an update
        # the step in progress uses gradients assigned (or changed, not zeroed) by hand since the
        # backward or clear that last left them: an average of per-sample gradients, say (GL004)
        self.assigned = False
        self.dropping_clears = 0  # clears that dropped gradients no step had used
        self.leaf_roots = 0  # backwards that started from a leaf loss and reached no parameter (GL007)
        self.judged: set = set()  # optimizers and (optimizer, site) counted stale in the running step

    # ------------------------------------------------------------------ leaves
    def watched(self) -> list:
        if self.watch is None:
            self.watch = list(self.leaves.values())
        return self.watch

    def state(self, leaf) -> LeafState:
        """The state of a leaf, starting to watch it if new."""
        key = id(leaf)
        entry = self.leaves.get(key)
        if entry is not None and entry[0]() is leaf:
            return entry[1]
        state = LeafState()
        state.remember(leaf.grad)
        self.leaves[key] = (weakref.ref(leaf, functools.partial(self._forget, key)), state)
        self.watch = None
        return state

    def is_owned(self, leaf) -> bool:
        """Does some optimizer hold `leaf` (as far as the steps and clears seen so far tell)?"""
        state = self.known(leaf)
        return state is not None and state.owned

    def known(self, leaf) -> Optional[LeafState]:
        entry = self.leaves.get(id(leaf))
        return entry[1] if entry is not None and entry[0]() is leaf else None

    def _forget(self, key: int, ref: weakref.ref) -> None:
        entry = self.leaves.get(key)
        if entry is not None and entry[0] is ref:
            del self.leaves[key]
            self.watch = None

    def discover(self, roots: list, inputs: list) -> None:
        """Watch the leaves a site's first backward writes into (parameters and other leaves), so
        leaves no optimizer holds are seen too."""
        torch = self.torch
        if inputs:
            for leaf in inputs:
                if isinstance(leaf, torch.Tensor) and leaf.is_leaf and leaf.requires_grad:
                    self.state(leaf)
            return
        seen: set = set()
        todo = list(roots)
        keep = []  # holds the walked nodes alive while their ids are in `seen`
        while todo and len(seen) < GRAPH_LIMIT:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            keep.append(node)
            leaf = getattr(node, "variable", None)
            if leaf is not None and isinstance(leaf, torch.Tensor):
                self.state(leaf)
            for child, _ in node.next_functions:
                if child is not None:
                    todo.append(child)

    # ------------------------------------------------------------------ around a backward
    def before_accumulate(self) -> None:
        """Classify every watched leaf's gradient just before a backward writes into it."""
        checks: Optional[List[Tuple[LeafState, Any]]] = None
        moved: Optional[List[Tuple[LeafState, Any, Union[bool, str, None]]]] = None  # changed, in no optimizer
        dropped: Dict[int, BackwardSite] = {}  # sites whose fresh gradients were cleared by hand
        for ref, state in self.watched():
            leaf = ref()
            if leaf is None:
                self.watch = None
                continue
            grad = leaf.grad
            if grad is None:
                if state.grad_ref is not None:  # set to None since we last looked: cleared
                    if state.fresh is not None and state.owned:  # by hand, before any step used them
                        dropped[id(state.fresh)] = state.fresh
                    state.clear()
                    state.grad_ref = None
                state.before = FRESH
            elif state.untouched(grad):
                # Used by a step, or (a leaf in no optimizer) updated by hand since it got these
                # gradients: stale unless cleared through `.data`, which only its content can show.
                state.before = CARRY
                if state.used and state.stale is not None:
                    state.before = STALE_AGAIN  # judged with the first, by its content check
                elif state.used:
                    checks = self._stale(state, grad, checks)
                elif not state.owned and state.value_version >= 0:
                    changed, verdict = updated(leaf, state.value_probe, state.value_version, state.grad_sample)
                    if changed:
                        moved = moved or []
                        moved.append((state, grad, verdict))
            else:
                # Replaced or changed in place since we last looked (p.grad.zero_(), p.grad = ...):
                # treated as cleared. Precision first: only untouched gradients count as carried.
                if state.grad_ref is not None:
                    if (state.fresh is not None and state.owned and grad._version != state.clip_version
                            and all_zero(grad, self.torch)):  # zeroed by hand before any step used them
                        dropped[id(state.fresh)] = state.fresh
                    state.clear()
                state.remember(grad)
                state.before = FRESH
        for site in dropped.values():
            site.bump(FRESH_CLEARED)
        if moved:
            stepped, otherwise = stepped_by_hand([verdict for _, _, verdict in moved])
            for (state, grad, _), by_hand in zip(moved, stepped):
                if by_hand:
                    checks = self._stale(state, grad, checks)
            self.moved_otherwise = self.moved_otherwise or otherwise
        if checks:
            # Their norms now, queued on the device. Read back (a sync) only where they matter: for
            # an optimizer's parameter when a step is about to use the gradient (a GAN's generator
            # backward writes into the discriminator's gradients, which are cleared before its own
            # step: never read), for a leaf in no optimizer right after this backward if it wrote it.
            manual = []
            for (state, grad), norm in zip(checks, norms([grad for _, grad in checks], self.torch)):
                state.pre = norm
                if not state.owned:
                    manual.append((state, grad))
            if manual:
                self.checks = manual

    @staticmethod
    def _stale(state: LeafState, grad, checks: Optional[list]) -> Optional[list]:
        """Mark a leaf whose gradient something already used as stale, pending the check of its
        content (UNSURE without a probe to check by); returns `checks` with it added."""
        if state.probe is None:
            state.before = UNSURE
            return checks
        state.before = STALE  # until its content says otherwise (after_accumulate)
        checks = checks if checks is not None else []
        checks.append((state, grad))
        return checks

    def _settle_checks(self) -> None:
        """Provisionally stale leaves in no optimizer this backward wrote into: cleared through
        `.data` since the update read them (zero, or changed, before the backward), carried over
        (as the update read them), or unsure (nothing to tell by)."""
        assert self.checks is not None
        checks = self.checks
        self.checks = None
        written = []
        for state, grad in checks:
            ref = state.grad_ref
            if ref is not None and grad._version == state.version and ref() is grad:
                continue  # not written by this backward: not judged, no sync for it
            state.suspect = True  # however it turns out: probe it from now on
            written.append(state)
        pairs = compare([state.probe for state in written], [state.pre for state in written], self.torch)
        for state, pair in zip(written, pairs):
            result = carried(pair)
            if result == FRESH:
                state.clear()
            state.before = result
            state.pre = None

    def after_accumulate(self, site: BackwardSite) -> bool:
        """Leaves whose gradient the backward changed: note stale and never-cleared accumulation.
        Returns whether it wrote some optimizer's parameter's gradient."""
        stale = unsure = False
        manual = 0
        params = False
        probes: Optional[List[Tuple[LeafState, Any]]] = None
        if self.checks is not None:
            self._settle_checks()
        for ref, state in self.watched():
            leaf = ref()
            if leaf is None:
                self.watch = None
                continue
            grad = leaf.grad
            if grad is None:
                continue
            version = grad._version
            gref = state.grad_ref
            if gref is not None and gref() is grad:
                if version == state.version:
                    continue  # not written by this backward
            else:
                state.grad_ref = weakref.ref(grad)
                state.clip_version = -1
            state.version = version
            state.fresh = site
            state.discarded = None
            before = state.before
            if state.owned:
                params = True
                if before == FRESH:  # the common case: a clear (or a new leaf) before this backward
                    state.used = False
                    continue
                if before == STALE:
                    stale = True
                    if state.stale is None:
                        state.stale = site
                elif before == STALE_AGAIN:
                    stale = True
                    if site is not state.stale and (state.also is None or site not in state.also):
                        state.also = (state.also or []) + [site]
                elif before == UNSURE:
                    unsure = True
                    if state.unsure is None:
                        state.unsure = site
            else:
                if before >= STALE:  # accumulated onto gradients an update read (or maybe): probe it
                    state.suspect = True
                if before == STALE:
                    manual += 1
                elif before == CARRY and not state.cleared and state.noted is None:
                    state.noted = site
                    site.loose_leaves += 1
                # A hand-written update reads the gradient as this backward leaves it: probe
                # suspects (and a leaf's first gradient) now, for the check before the next one.
                if state.suspect or state.value_version < 0:
                    if probes is None:
                        probes = []
                    probes.append((state, grad))
                else:
                    state.probe = None
                if before == STALE and state.noted is not None:  # updated by hand after all: no note
                    state.noted.loose_leaves -= 1
                    state.noted = None
                state.value_version = leaf._version
                state.value_probe = value_of(leaf)
                state.grad_sample = sample(grad) if state.value_probe is not None else None
            if before not in (STALE, STALE_AGAIN, UNSURE):  # still holding what a step used, if it did
                state.used = False
            state.before = FRESH
        if probes:
            self.take_probes(probes)
        if params and site.calls <= ZEROED_CHECKED_STEPS:
            self._measure_written(site)
        if self.moved_otherwise:
            self.moved_otherwise = False
            site.bump(MOVED_OTHERWISE)
        if stale or unsure:
            self.marks += 1  # a step in progress (a closure's backward) judges these when the closure returns
        if stale:
            site.stale_accumulations += 1
        if manual:
            site.manual_stale += 1
            self.manual += 1
            if manual > site.manual_stale_leaves:
                site.manual_stale_leaves = manual
        if params:
            site.bump(PARAM_GRADS)
        return params

    def _measure_written(self, site: BackwardSite) -> None:
        """`LeafState.written` of the optimizers' parameters whose gradients `site` wrote (its
        first calls only): queued on the device, read only by a step that finds them all zero."""
        written = []
        for ref, state in self.watched():
            leaf = ref()
            if leaf is not None and state.owned and state.fresh is site and leaf.grad is not None:
                written.append((state, leaf.grad))
        for (state, _), norm in zip(written, norms([grad for _, grad in written], self.torch)):
            state.written = norm

    # ------------------------------------------------------------------ content probes
    def take_probes(self, pairs: List[Tuple[LeafState, Any]]) -> None:
        """Store each leaf's probe: its gradient's norm now, as the step or update uses it."""
        for (state, _), norm in zip(pairs, norms([grad for _, grad in pairs], self.torch)):
            state.probe = norm

    # ------------------------------------------------------------------ optimizers
    def adopt(self, optimizer) -> Adopted:
        """Watch an optimizer's parameters; re-read when its parameter count changes."""
        key = id(optimizer)
        adopted = self.optimizers.get(key)
        if adopted is not None and adopted.ref() is not optimizer:
            adopted = None
        count = 0
        for group in optimizer.param_groups:
            count += len(group["params"])
        if adopted is None or adopted.count != count:
            if adopted is None:
                stats = OptimizerStats(name=type(optimizer).__name__)
                self.obs.optimizers.append(stats)
                ref = weakref.ref(optimizer, functools.partial(self._forget_optimizer, key))
                adopted = self.optimizers[key] = Adopted(ref, stats)
            adopted.count = adopted.stats.params = count
            pairs = []
            for group in optimizer.param_groups:
                for param in group["params"]:
                    state = self.state(param)
                    pairs.append((weakref.ref(param), state))
                    if not state.owned:
                        state.owned = True
                        if state.noted is not None:  # an optimizer holds it after all
                            state.noted.loose_leaves -= 1
                            state.noted = None
            adopted.pairs = pairs
            adopted.settled = None
        return adopted

    def _forget_optimizer(self, key: int, ref: weakref.ref) -> None:
        adopted = self.optimizers.get(key)
        if adopted is not None and adopted.ref is ref:
            del self.optimizers[key]

    def before_step(self, optimizer) -> Adopted:
        adopted = self.adopt(optimizer)
        stats = adopted.stats
        stats.steps += 1
        self.steps += 1
        self.obs.steps += 1
        self.judged.clear()
        self._followed_by_step()
        fresh = kept = False
        gone: List[Tuple[LeafState, Any]] = []  # fresh gradients not as their backward left them
        dropped: Optional[Dict[int, BackwardSite]] = None
        marked = []
        if adopted.settled == (self.marks, self.dropping_clears):
            # Nothing marked a leaf or charged a clear since the last step left none so (the
            # common loop): only whether one fresh gradient is kept as its backward left it.
            for ref, state in adopted.pairs:
                if state.fresh is not None:
                    fresh = True
                    kept = self._kept(ref, state, gone)
                    if kept:
                        break
        else:
            fresh, kept, dropped, marked = self._scan(adopted, gone)
        assigned = False
        if dropped and not fresh:
            # GL005: every gradient a backward produced for this step was cleared before it, unless
            # what the step uses was assigned by hand after the clear, or the backward meant to give
            # the step its gradients started from a leaf loss and reached no parameter (GL007's).
            assigned = assigned_after_clear(adopted.pairs)
            if not assigned and self.leaf_roots == adopted.leaf_roots:
                for clear_site in dropped.values():
                    clear_site.bump(CLEAR_BEFORE_STEP)
        if gone and not kept:
            assigned = dropped_by_hand(gone, self.torch)
        elif kept and stats.steps <= ZEROED_CHECKED_STEPS:
            zeroed_through_data(adopted.pairs, self.torch)
        self.assigned = assigned
        if marked:
            self._judge_step(stats, marked)
        adopted.marks = self.marks
        adopted.leaf_roots = self.leaf_roots
        return adopted

    @staticmethod
    def _kept(ref: weakref.ref, state: LeafState, gone: List[Tuple[LeafState, Any]]) -> bool:
        """Is a fresh gradient still as its backward (or a clip) left it? If not, it is added to
        `gone` (unless its leaf died)."""
        param = ref()
        grad = param.grad if param is not None else None
        gref = state.grad_ref
        kept = False
        if grad is not None and gref is not None:
            version = grad._version
            kept = gref() is grad and (version == state.version or version == state.clip_version)
        if not kept and param is not None:
            gone.append((state, grad))
        return kept

    def _scan(self, adopted: Adopted, gone: List[Tuple[LeafState, Any]]):
        """Every leaf of a stepping optimizer: (some gradient is fresh, one fresh gradient is kept,
        clear sites that dropped fresh gradients by id, the leaves marked stale or unsure)."""
        fresh = kept = False
        dropped: Optional[Dict[int, BackwardSite]] = None
        marked = []
        for ref, state in adopted.pairs:
            if state.fresh is not None:
                fresh = True
                if not kept:  # one gradient still as its backward (or a clip) left it settles it
                    kept = self._kept(ref, state, gone)
            elif state.discarded is not None:
                if dropped is None:
                    dropped = {}
                dropped[id(state.discarded)] = state.discarded
            if state.stale is not None or state.unsure is not None:
                marked.append((ref, state))
        return fresh, kept, dropped, marked

    def _judge_step(self, stats: OptimizerStats, marked: List[Tuple[weakref.ref, LeafState]]) -> None:
        """A step about to use (or, after a closure, that used) the gradients of `marked` leaves:
        a stale step for the sites that accumulated onto used gradients; for sites whose carried
        gradients could not be verified, an unsure step (counted apart: neither stale nor clean).
        The marks are settled here, so one step is counted once."""
        stale_sites: Dict[int, Tuple[BackwardSite, int]] = {}
        unsure_sites: Dict[int, BackwardSite] = {}
        live = []
        for ref, state in marked:
            param = ref()
            if param is not None and param.grad is not None:
                live.append(state)
                state.suspect = True  # judged at a step: probe it at the next ones
        # Content check of the provisionally stale: the norm just before the backward accumulated
        # onto the gradient against the norm when the previous step used it (one sync).
        stale = [state for state in live if state.stale is not None]
        verdicts = compare([state.probe for state in stale], [state.pre for state in stale], self.torch)
        outcome: Dict[int, int] = {}
        for state, pair in zip(stale, verdicts):
            outcome[id(state)] = carried(pair)
        last: set = set()  # the sites that accumulated last onto a stale gradient this step uses
        for state in live:
            result = outcome.get(id(state), UNSURE)
            if result == STALE and state.stale is not None:
                charged = [state.stale] + (state.also or [])
                for site in charged:
                    site, count = stale_sites.get(id(site), (site, 0))
                    stale_sites[id(site)] = (site, count + 1)
                last.add(id(charged[-1]))
            elif result == UNSURE:
                unsure_site = state.stale if state.stale is not None else state.unsure
                if unsure_site is not None:
                    unsure_sites[id(unsure_site)] = unsure_site
            # FRESH: cleared through .data before that backward
        for _, state in marked:
            state.stale = state.unsure = state.pre = state.also = None
        if stale_sites:
            # once per step, however many of its closure's evaluations read stale gradients
            if id(stats) not in self.judged:
                self.judged.add(id(stats))
                stats.stale_steps += 1
            for key, (site, count) in stale_sites.items():
                if (id(stats), key) not in self.judged:
                    self.judged.add((id(stats), key))
                    site.stale_steps += 1
                if key not in last:  # a later backward accumulated onto the same stale gradients
                    site.bump(STALE_UPSTREAM)
                site.stale_params = max(site.stale_params, count)
                if stats.name not in site.stale_optimizers:
                    site.stale_optimizers.append(stats.name)
        for key, site in unsure_sites.items():
            if key not in stale_sites:
                site.bump(UNSURE_CARRY)

    def _followed_by_step(self) -> None:
        """The backward sites run since the last step are followed by one now."""
        for site in self.pending_sites.values():
            site.steps += 1
        self.pending_sites.clear()

    def after_step(self, optimizer) -> None:
        adopted = self.optimizers.get(id(optimizer))
        if adopted is None or adopted.ref() is not optimizer:  # a step whose pre-hook we missed
            adopted = self.adopt(optimizer)
            adopted.marks = self.marks
        self._followed_by_step()  # backwards run by the step itself (a closure): this step followed them
        self.judge_marks(adopted)
        probe_all = not adopted.probed
        adopted.probed = True
        self.mark_used(adopted, probe_all)

    def judge_marks(self, adopted: Adopted) -> None:
        """Judge what backward calls inside `adopted`'s running step (a closure's) marked stale or
        unsure since the optimizer last read its gradients."""
        if self.marks != adopted.marks:
            self._judge_step(adopted.stats, [(ref, state) for ref, state in adopted.pairs
                                             if state.stale is not None or state.unsure is not None])
            adopted.marks = self.marks

    def mark_used(self, adopted: Adopted, probe_all: bool) -> None:
        """The optimizer read its parameters' gradients as they are now (its step, or the return
        of its step's closure): remember them as used, probing those judged before (or all)."""
        probes: Optional[List[Tuple[LeafState, Any]]] = None
        settled = True
        for ref, state in adopted.pairs:
            param = ref()
            if param is None:
                if state.stale is not None or state.unsure is not None or state.discarded is not None:
                    settled = False
                continue
            if state.unsure is not None:
                settled = False
            grad = param.grad
            if grad is None:
                state.grad_ref, state.version, state.used = None, -1, False
                state.probe = None
            else:  # LeafState.remember, inlined: this runs for every parameter on every step
                gref = state.grad_ref
                if gref is None or gref() is not grad:
                    state.grad_ref = weakref.ref(grad)
                state.version = grad._version
                state.used = True
                if state.suspect or probe_all:
                    if probes is None:
                        probes = []
                    probes.append((state, grad))
                else:
                    state.probe = None
            state.stale = state.also = None
            state.fresh = None
            state.discarded = None
        adopted.settled = (self.marks, self.dropping_clears) if settled else None
        if probes:
            self.take_probes(probes)

    # ------------------------------------------------------------------ clears
    def optimizer_params(self, optimizer) -> List[Tuple[weakref.ref, LeafState]]:
        """(weak reference, state) of each parameter of `optimizer`."""
        return self.adopt(optimizer).pairs

    def module_params(self, module) -> List[Tuple[weakref.ref, LeafState]]:
        """(weak reference, state) of each parameter of `module` that is watched."""
        leaves = self.leaves
        pairs = []
        for param in module.parameters():
            entry = leaves.get(id(param))
            if entry is not None and entry[0]() is param:
                pairs.append(entry)
        return pairs

    def cleared(self, params: Iterable[Tuple[weakref.ref, LeafState]],
                site_of: Callable[[], BackwardSite]) -> Optional[BackwardSite]:
        """An explicit clear of `params` ((weak reference to a leaf, its state) pairs). When it
        drops gradients no step used yet, the clear's site (from `site_of`, worked out only then)
        is charged and returned."""
        site = None
        for ref, state in params:
            param = ref()
            if param is None:
                continue
            if state.fresh is not None:
                if site is None:
                    site = site_of()
                    self.dropping_clears += 1
                state.clear(site)
            elif state.unsure is None and state.noted is None and state.probe is None and state.pre is None:
                # LeafState.clear, inlined for what a step leaves (this runs for every parameter on
                # every step): nothing to drop or forget besides the use mark
                state.used = False
                state.stale = state.also = None
                state.cleared = True
            else:
                state.clear(site)
            grad = param.grad  # type: ignore[attr-defined]
            if grad is None:  # LeafState.remember, inlined: this runs for every parameter on every step
                state.grad_ref, state.version = None, -1
            else:
                state.remember(grad)
        return site
