"""What the tracer knows of one watched leaf's gradient (`LeafState`) and of one optimizer
(`Adopted`), and how a leaf's gradient stood just before a backward (FRESH ... STALE_AGAIN).
gradstate.py reads and updates them around backwards, steps and clears; the gradients themselves
are held by weak reference only.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, List, Optional, Tuple

from gradlint.runtime.events import BackwardSite, OptimizerStats

# Gradient state of a watched leaf just before a backward runs. UNSURE: untouched since a step (or
# a manual update) used it, but its content could not show whether it was cleared through `.data`.
# STALE_AGAIN: an optimizer's parameter already made stale by an earlier backward since its last step
# (`loss_a.backward(); loss_b.backward(); opt.step()` without a clear, or a GAN's generator backward
# through a discriminator that is never cleared): every such backward is charged when the step
# comes, the content check stays the one taken before the first.
FRESH, CARRY, STALE, UNSURE, STALE_AGAIN = 0, 1, 2, 3, 4


def carried(pair: Optional[Tuple[float, float]]) -> int:
    """From (norm when a step used the gradient, norm before a backward accumulated onto it):
    STALE (carried over as used), FRESH (zeroed or changed through `.data` in between), or UNSURE
    (no usable probe: missing, all zero, nan or inf)."""
    if pair is None:
        return UNSURE
    used, before = pair
    if used == 0.0 or not math.isfinite(used):
        return UNSURE
    return STALE if before == used else FRESH


class LeafState:
    """What we know about one leaf's `.grad`. Holds the gradient only by weak reference."""

    __slots__ = ("grad_ref", "version", "used", "stale", "owned", "cleared", "noted", "before",
                 "value_version", "fresh", "discarded", "suspect", "probe", "unsure", "pre", "also",
                 "value_probe", "grad_sample", "clip_version", "written")

    def __init__(self) -> None:
        self.grad_ref: Optional[weakref.ref] = None  # the .grad last seen (None: no grad)
        self.version = -1  # its version counter then
        self.used = False  # the gradient holds what an optimizer step used (no clear seen since)
        self.stale: Optional[BackwardSite] = None  # site that accumulated onto used gradients
        self.also: Optional[List[BackwardSite]] = None  # later sites that did, before the next step
        self.owned = False  # some optimizer holds this leaf
        self.cleared = False  # its gradient was cleared at least once
        self.noted: Optional[BackwardSite] = None  # site charged with the loose-leaf note
        self.before = FRESH  # state just before the running backward
        self.value_version = -1  # the leaf's own version counter after the last backward into it
        # (storage address, sampled elements) of a leaf in no optimizer after the last backward into it: an
        # update through `.data` (`p.data.add_(...)`, `p.data = p.data - ...`) leaves the version
        # counter as it was, so only these show that its value changed
        self.value_probe: Optional[Tuple[int, Any]] = None
        # its gradient then, at the same elements: an update that read it moved them along it
        self.grad_sample: Any = None
        # the backward site that wrote into the gradient since a step used it / a clear (None: none did)
        self.fresh: Optional[BackwardSite] = None
        self.discarded: Optional[BackwardSite] = None  # clear site that dropped fresh gradients
        self.suspect = False  # once found untouched since it was used: its content gets probed
        self.probe = None  # 0-dim tensor: L1 norm of the gradient when last used (suspects only)
        self.unsure: Optional[BackwardSite] = None  # site that accumulated onto an UNSURE gradient
        self.pre = None  # 0-dim tensor: its norm just before the backward that made it (maybe) stale
        self.clip_version = -1  # the gradient's version counter after a clip changed it in place
        # 0-dim tensor: its L1 norm right after a backward wrote it (a site's first calls only), so a
        # step that finds it all zero can tell "zeroed since" from "the backward wrote zeros"
        self.written = None

    def remember(self, grad) -> None:
        if grad is None:
            self.grad_ref, self.version = None, -1
            return
        ref = self.grad_ref
        if ref is None or ref() is not grad:  # accumulation in place keeps the same object
            self.grad_ref = weakref.ref(grad)
        self.version = grad._version

    def untouched(self, grad) -> bool:
        """Is `grad` what we last saw: the same object, not modified in place, or modified only by a
        clip since (a clip scales a gradient, it does not clear it: `clip_grad_norm_(params, inf)`
        run after the step to log the norm multiplies every gradient by 1.0 in place)?"""
        ref = self.grad_ref
        if ref is None:
            return False
        version = grad._version
        return (version == self.version or version == self.clip_version) and ref() is grad

    def clear(self, site: Optional[BackwardSite] = None) -> bool:
        """The gradient was cleared (by the clear at `site` when known). Returns whether it held
        gradients no step had used (GL005's observation)."""
        dropped = self.fresh is not None
        if dropped and site is not None:
            self.discarded = site
        self.fresh = None
        self.used = False
        self.stale = None
        self.also = None
        self.unsure = None
        self.probe = self.pre = None
        self.cleared = True
        if self.noted is not None:  # a cleared leaf is not a never-cleared leaf after all
            self.noted.loose_leaves -= 1
            self.noted = None
        return dropped


class Adopted:
    """An optimizer we have seen: its stats and its parameters' states (weakly held)."""

    __slots__ = ("ref", "stats", "count", "pairs", "marks", "probed", "settled", "leaf_roots")

    def __init__(self, ref: weakref.ref, stats: OptimizerStats) -> None:
        self.ref = ref
        self.stats = stats
        self.count = -1
        self.pairs: List[Tuple[weakref.ref, LeafState]] = []
        self.marks = 0  # GradState.marks when its step began
        self.probed = False  # its parameters were all probed once (at its first step)
        # (GradState.marks, GradState.dropping_clears) when its step last left none of its leaves
        # marked stale or unsure or charged to a clear; None: not known to be so
        self.settled: Optional[Tuple[int, int]] = None
        self.leaf_roots = 0  # GradState.leaf_roots when its last step began
