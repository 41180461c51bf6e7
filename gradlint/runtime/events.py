"""What the tracer observed, as plain data: no tensors, no torch import.

The tracer aggregates its events per *backward site* (the stack of user frames of a backward call)
instead of keeping an event log, so memory stays flat however long training runs. The records are
JSON-able so ranks of a distributed run can write them to disk and one process can merge them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

# One user frame: (absolute path, line). A stack is innermost first.
Frame = Tuple[str, int]
Stack = Tuple[Frame, ...]

# Names of `BackwardSite.counts` entries: observations the step-order and graph-lifetime judges
# (gradlint/runtime/judges.py) read.
CLIP_CALLS = "clip_calls"  # clip site: clip calls that had gradients to clip (max_norm not inf)
CLIP_ON_SCALED = "clip_on_scaled"  # ... on gradients still scaled by an enabled GradScaler (no unscale_)
CLIP_USED = "clip_used"  # ... whose clipped gradients an optimizer step then used unchanged
CLIP_WASTED = "clip_wasted"  # ... whose clipped gradients were changed or cleared before any step used them
# clip site: steps on gradients assigned by hand (`p.grad = summed / n`) that came after clips of
# this site whose gradients were changed or cleared: those may have been read (summed) first
CLIP_BEFORE_ASSIGNED = "clip_before_assigned"
CLEAR_DISCARDED = "clear_discarded"  # clear site: clears that dropped gradients no step had used yet
CLEAR_BEFORE_STEP = "clear_before_step"  # ... after which a step saw only such dropped gradients
# backward site: optimizer steps that found every gradient this site wrote for them gone (None, or
# zeroed) though no wrapped clear ran: cleared by hand (`p.grad = None`, `p.grad.zero_()` per
# parameter) between the backward and the step
FRESH_DROPPED = "fresh_dropped"
# backward site: backwards after it that found the gradients it wrote cleared by hand (None, or
# zeroed) with no wrapped clear, before any step used them (a clear on every micro-batch)
FRESH_CLEARED = "fresh_cleared"
KEPT_GRAPH = "kept_graph"  # backward site: roots whose graph was still alive two iterations later
KEPT_AT_ONCE = "kept_at_once"  # backward site: most such graphs alive at the same time
# backward site: most roots of calls three or more calls back still alive at once, before any
# optimizer step ran (a loop updating its parameters by hand has no steps to count iterations by)
KEPT_UNSTEPPED = "kept_unstepped"
FREED_GRAPH = "freed_graph"  # backward site: watched roots whose graph was freed in time
# backward site: calls whose graph kept, two iterations later, a node near its root that the
# iteration had made (a stored output or component loss: `all_logits.append(logits)`)
KEPT_UPSTREAM = "kept_upstream"
KEPT_UPSTREAM_AT_ONCE = "kept_upstream_at_once"  # backward site: most such calls' nodes alive at the same time
# backward site: calls that wrote no parameter's gradient from roots that are leaves in no optimizer
# (LEAF_ROOT), or computed from one-element such leaves alone, `(loss / k).backward()`
# (LEAF_DERIVED; runtime/leafroots.py)
LEAF_ROOT = "leaf_root"
LEAF_DERIVED = "leaf_derived"
PARAM_GRADS = "param_grads"  # backward site: calls that wrote into some optimizer's parameter
CARRIED_REUSE = "carried_reuse"  # backward site: re-ran a graph it retained before an optimizer step
# backward site: retained graphs hooked holding nodes no earlier graph of the site held (those that
# could show CARRIED_REUSE): state carried from each iteration to the next shows it in nearly all
FRESH_RETAINED = "fresh_retained"
SECOND_TIME = "second_time_error"  # backward site: raised "backward through the graph a second time"
SECOND_TIME_AFTER_STEP = "second_time_after_step"  # ... when a step ran since this site's previous call
# backward site: raised "modified by an inplace operation" on a call after a step, every earlier call
# having succeeded: it reached tensors saved by a graph made before the step (which updated them)
INPLACE_AFTER_STEP = "inplace_after_step"
BACKWARD_FAILED = "backward_failed"  # backward site: calls that raised
ONE_SAMPLE_ROOT = "one_sample_root"  # backward site: one-element roots with dimensions (shape (1,), (1, 1))
# backward site: steps that used gradients it accumulated onto ones a step had used, untouched as far
# as the version counter shows, whose content could not tell a `.data` clear from a carry-over (no
# probe yet, or all zero): neither a stale step nor a clean one
UNSURE_CARRY = "unsure_carry"
# backward site: of its stale steps, those where a later backward accumulated onto the same stale
# gradients before the step (it was not the last to add to what the step used)
STALE_UPSTREAM = "stale_upstream"
# backward site: calls that found leaves in no optimizer changed since the previous backward in no
# relation to their gradients (every leaf that could tell): an average or a copy, not an update
MOVED_OTHERWISE = "moved_otherwise"


@dataclass
class BackwardSite:
    """Everything seen at one call site of `backward` / `torch.autograd.backward` / `torch.autograd.grad`."""

    stack: Stack
    kind: str  # "backward" (writes .grad) | "grad" (torch.autograd.grad: returns gradients)
    # Exact span of the call in the innermost user frame: (line, column, end_line, end_column), 1-based.
    span: Optional[Tuple[int, int, int, int]] = None
    calls: int = 0
    # GL003: calls on a root of more than one element without a gradient.
    nonscalar: int = 0
    nonscalar_shape: Optional[List[int]] = None
    # GL002: calls that kept their graph with retain_graph=True, and how many of those graphs a
    # later backward ran again; `reused_by` is the stack of the first backward that did.
    retained: int = 0
    retained_watched: int = 0  # of those, graphs hooked (all of the first ones, then a sample)
    retained_reused: int = 0
    reused_by: Optional[Stack] = None
    # GL001: optimizer steps that followed backward calls from here, steps that used gradients this
    # site accumulated onto gradients an earlier step had already used, and how many parameters.
    steps: int = 0
    stale_accumulations: int = 0
    stale_steps: int = 0
    stale_params: int = 0
    stale_optimizers: List[str] = field(default_factory=list)
    # Note: leaves in no optimizer that carried gradients across backward calls, never cleared.
    loose_leaves: int = 0
    # GL001 without an optimizer: accumulations onto a leaf (in no optimizer) whose value changed
    # since the previous backward accumulated into it, with no clear in between: a manual update
    # (`p -= lr * p.grad`) that will re-apply stale gradients.
    manual_stale: int = 0
    manual_stale_leaves: int = 0
    # Observations for the step-order and graph-lifetime rules, by name (see COUNTS below); a
    # plain dict so new observations need no schema change in merging or JSON.
    counts: Dict[str, int] = field(default_factory=dict)

    def bump(self, name: str, by: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + by

    def raise_to(self, name: str, value: int) -> None:
        """Keep the largest value seen of a count that is a maximum (graphs alive at once)."""
        if value > self.counts.get(name, 0):
            self.counts[name] = value

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    @property
    def where(self) -> Frame:
        return self.stack[0]

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["stack"] = [list(f) for f in self.stack]
        out["reused_by"] = [list(f) for f in self.reused_by] if self.reused_by else None
        out["span"] = list(self.span) if self.span else None
        out["counts"] = dict(self.counts)
        out["stale_optimizers"] = list(self.stale_optimizers)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "BackwardSite":
        data = dict(data)
        data["stack"] = tuple((str(p), int(n)) for p, n in data["stack"])
        if data.get("reused_by"):
            data["reused_by"] = tuple((str(p), int(n)) for p, n in data["reused_by"])
        if data.get("span"):
            data["span"] = tuple(int(v) for v in data["span"])
        if not isinstance(data.get("counts"), dict):
            data["counts"] = {}
        data["counts"] = {str(k): int(v) for k, v in data["counts"].items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def merge(self, other: "BackwardSite") -> None:
        """Fold another rank's record of the same site into this one."""
        for name in ("calls", "nonscalar", "retained", "retained_watched", "retained_reused", "steps",
                     "stale_accumulations", "stale_steps", "loose_leaves", "manual_stale"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, value in other.counts.items():
            self.bump(key, value)
        self.stale_params = max(self.stale_params, other.stale_params)
        self.manual_stale_leaves = max(self.manual_stale_leaves, other.manual_stale_leaves)
        self.nonscalar_shape = self.nonscalar_shape or other.nonscalar_shape
        self.reused_by = self.reused_by or other.reused_by
        self.span = self.span or other.span
        for name in other.stale_optimizers:
            if name not in self.stale_optimizers:
                self.stale_optimizers.append(name)


@dataclass
class OptimizerStats:
    name: str  # class name, e.g. "Adam"
    steps: int = 0
    stale_steps: int = 0
    params: int = 0


@dataclass
class Observations:
    """The tracer's whole output: per-site records, per-optimizer counts, the tracer's own health."""

    sites: Dict[Tuple[Stack, str], BackwardSite] = field(default_factory=dict)
    # Other traced calls (gradient clipping "clip", clears "clear"): same record, kept apart so
    # the backward judges never count them as backward calls.
    call_sites: Dict[Tuple[Stack, str], BackwardSite] = field(default_factory=dict)
    optimizers: List[OptimizerStats] = field(default_factory=list)
    backward_calls: int = 0
    steps: int = 0
    internal_errors: int = 0
    first_error: Optional[str] = None
    ranks: int = 1
    threads: int = 1  # Python threads that ran traced training calls
    gpus: int = 0  # torch.cuda.device_count() when tracing started (the most over ranks)

    def site(self, stack: Stack, kind: str, store: Optional[dict] = None) -> BackwardSite:
        sites = self.sites if store is None else store
        key = (stack, kind)
        found = sites.get(key)
        if found is None:
            found = sites[key] = BackwardSite(stack=stack, kind=kind)
        return found

    def to_json(self) -> dict:
        return {
            "sites": [s.to_json() for s in self.sites.values()],
            "call_sites": [s.to_json() for s in self.call_sites.values()],
            "optimizers": [dict(o.__dict__) for o in self.optimizers],
            "backward_calls": self.backward_calls,
            "steps": self.steps,
            "internal_errors": self.internal_errors,
            "first_error": self.first_error,
            "ranks": self.ranks,
            "threads": self.threads,
            "gpus": self.gpus,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Observations":
        obs = cls(
            backward_calls=int(data.get("backward_calls", 0)),
            steps=int(data.get("steps", 0)),
            internal_errors=int(data.get("internal_errors", 0)),
            first_error=data.get("first_error"),
            ranks=int(data.get("ranks", 1)),
            threads=int(data.get("threads", 1)),
            gpus=int(data.get("gpus", 0)),
        )
        for raw in data.get("sites", []):
            site = BackwardSite.from_json(raw)
            obs.sites[(site.stack, site.kind)] = site
        for raw in data.get("call_sites", []):
            site = BackwardSite.from_json(raw)
            obs.call_sites[(site.stack, site.kind)] = site
        obs.optimizers = [OptimizerStats(**o) for o in data.get("optimizers", [])]
        return obs

    def merge(self, other: "Observations") -> None:
        """Combine another process's observations (same program, another rank) into these."""
        self.absorb(other)
        self.ranks += other.ranks

    def absorb(self, other: "Observations") -> None:
        """Add another thread's observations of this same process into these (copies its records)."""
        for mine_all, theirs_all in ((self.sites, other.sites), (self.call_sites, other.call_sites)):
            for key, site in list(theirs_all.items()):
                mine = mine_all.get(key)
                if mine is None:
                    mine_all[key] = BackwardSite.from_json(site.to_json())
                else:
                    mine.merge(site)
        self.optimizers.extend(OptimizerStats(**o.__dict__) for o in other.optimizers)
        self.backward_calls += other.backward_calls
        self.steps += other.steps
        self.gpus = max(self.gpus, other.gpus)
        self.internal_errors += other.internal_errors
        self.first_error = self.first_error or other.first_error
