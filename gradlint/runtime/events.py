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

    @property
    def where(self) -> Frame:
        return self.stack[0]

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["stack"] = [list(f) for f in self.stack]
        out["reused_by"] = [list(f) for f in self.reused_by] if self.reused_by else None
        out["span"] = list(self.span) if self.span else None
        return out

    @classmethod
    def from_json(cls, data: dict) -> "BackwardSite":
        data = dict(data)
        data["stack"] = tuple((str(p), int(n)) for p, n in data["stack"])
        if data.get("reused_by"):
            data["reused_by"] = tuple((str(p), int(n)) for p, n in data["reused_by"])
        if data.get("span"):
            data["span"] = tuple(int(v) for v in data["span"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def merge(self, other: "BackwardSite") -> None:
        """Fold another rank's record of the same site into this one."""
        for name in ("calls", "nonscalar", "retained", "retained_watched", "retained_reused", "steps", "stale_accumulations",
                     "stale_steps", "loose_leaves"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.stale_params = max(self.stale_params, other.stale_params)
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
    optimizers: List[OptimizerStats] = field(default_factory=list)
    backward_calls: int = 0
    steps: int = 0
    internal_errors: int = 0
    first_error: Optional[str] = None
    ranks: int = 1

    def site(self, stack: Stack, kind: str) -> BackwardSite:
        key = (stack, kind)
        found = self.sites.get(key)
        if found is None:
            found = self.sites[key] = BackwardSite(stack=stack, kind=kind)
        return found

    def to_json(self) -> dict:
        return {
            "sites": [s.to_json() for s in self.sites.values()],
            "optimizers": [dict(o.__dict__) for o in self.optimizers],
            "backward_calls": self.backward_calls,
            "steps": self.steps,
            "internal_errors": self.internal_errors,
            "first_error": self.first_error,
            "ranks": self.ranks,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Observations":
        obs = cls(
            backward_calls=int(data.get("backward_calls", 0)),
            steps=int(data.get("steps", 0)),
            internal_errors=int(data.get("internal_errors", 0)),
            first_error=data.get("first_error"),
            ranks=int(data.get("ranks", 1)),
        )
        for raw in data.get("sites", []):
            site = BackwardSite.from_json(raw)
            obs.sites[(site.stack, site.kind)] = site
        obs.optimizers = [OptimizerStats(**o) for o in data.get("optimizers", [])]
        return obs

    def merge(self, other: "Observations") -> None:
        """Combine another process's observations (same program, another rank) into these."""
        for key, site in other.sites.items():
            mine = self.sites.get(key)
            if mine is None:
                self.sites[key] = BackwardSite.from_json(site.to_json())
            else:
                mine.merge(site)
        self.optimizers.extend(OptimizerStats(**o.__dict__) for o in other.optimizers)
        self.backward_calls += other.backward_calls
        self.steps += other.steps
        self.internal_errors += other.internal_errors
        self.first_error = self.first_error or other.first_error
        self.ranks += other.ranks
