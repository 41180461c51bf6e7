"""The tracer: watches what autograd and the optimizers actually do, without changing it.

Mechanisms (see RUNTIME-NOTES.md for why these and not others):

* `torch.Tensor.backward`, `torch.autograd.backward`, `torch.autograd.grad` are wrapped. The
  outermost call is recorded (nested calls, e.g. reentrant checkpointing, are folded into it; calls
  made while `torch.compile` traces are ignored): its user call stack, a non-scalar root without a
  gradient (GL003, seen before torch raises), and whether it retains its graph (GL002).
* Around an accumulating backward, the gradients of watched leaves are snapshotted (object identity
  and version counter). This tells, per parameter, whether the backward accumulated onto gradients
  that an optimizer step already used and nobody cleared since (GL001). Judging "cleared" from the
  `.grad` state (None, replaced, or changed in place since we last saw it) catches `p.grad = None`
  and `p.grad.zero_()` as well as `zero_grad()`, and works for DTensor/FSDP2 parameters that have no
  AccumulateGrad node.
* Global optimizer step pre/post hooks: a step that uses stale gradients confirms GL001; after a
  step the parameters' gradients are marked *used*.
* `Optimizer.zero_grad` / `Module.zero_grad` are wrapped to record explicit clears.
* After a backward with `retain_graph=True`, pre-hooks go on the retained graph's nodes that hold
  saved tensors; a later backward that runs one shows the retain was needed (GL002 refuted).

Nothing here keeps a tensor or graph alive: parameters and gradients are held by weak references,
node hooks die with their graph, and the records are plain data (events.py). Every hook body is
guarded: a bug in the tracer is counted in the report and never raised into training.
"""

from __future__ import annotations

import functools
import os
import random
import sys
import sysconfig
import traceback
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from gradlint.runtime.events import BackwardSite, Observations, OptimizerStats, Stack

_GRADLINT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_GRAPH_LIMIT = 50_000  # nodes walked at most per graph (discovery of leaves, retained graphs)
_STACK_LIMIT = 64  # user frames kept per call
_KEY_DEPTH = 256  # frames that identify a call path in the site cache

# Frame file kinds.
_INTERNAL, _LIBRARY, _USER = 0, 1, 2

# Gradient state of a watched leaf just before a backward runs.
_FRESH, _CARRY, _STALE = 0, 1, 2


class _LeafState:
    """What we know about one leaf's `.grad`. Holds the gradient only by weak reference."""

    __slots__ = ("grad_ref", "version", "used", "stale", "owned", "cleared", "noted", "before")

    def __init__(self) -> None:
        self.grad_ref: Optional[weakref.ref] = None  # the .grad last seen (None: no grad)
        self.version = -1  # its version counter then
        self.used = False  # the gradient as last seen is what an optimizer step used
        self.stale: Optional[BackwardSite] = None  # site that accumulated onto used gradients
        self.owned = False  # some optimizer holds this leaf
        self.cleared = False  # its gradient was cleared at least once
        self.noted: Optional[BackwardSite] = None  # site charged with the loose-leaf note
        self.before = _FRESH  # state just before the running backward

    def remember(self, grad) -> None:
        if grad is None:
            self.grad_ref, self.version = None, -1
            return
        ref = self.grad_ref
        if ref is None or ref() is not grad:  # accumulation in place keeps the same object
            self.grad_ref = weakref.ref(grad)
        self.version = grad._version

    def untouched(self, grad) -> bool:
        """Is `grad` exactly what we last saw (same object, not modified in place)?"""
        ref = self.grad_ref
        return ref is not None and ref() is grad and grad._version == self.version

    def clear(self) -> None:
        self.used = False
        self.stale = None
        self.cleared = True
        if self.noted is not None:  # a cleared leaf is not a never-cleared leaf after all
            self.noted.loose_leaves -= 1
            self.noted = None


class _Call:
    """The backward call in progress (only the outermost one)."""

    __slots__ = ("site", "stack", "roots", "inputs", "retain", "accumulates")

    def __init__(self, site, stack, roots, inputs, retain, accumulates) -> None:
        self.site = site
        self.stack = stack
        self.roots = roots  # grad_fn of each root, only when the graph is retained
        self.inputs = inputs
        self.retain = retain
        self.accumulates = accumulates


class _Adopted:
    """An optimizer we have seen: its stats and its parameters' states (weakly held)."""

    __slots__ = ("ref", "stats", "count", "pairs")

    def __init__(self, ref: weakref.ref, stats: OptimizerStats) -> None:
        self.ref = ref
        self.stats = stats
        self.count = -1
        self.pairs: list = []  # [(weakref(param), _LeafState)]


class _Retained:
    """One retained graph: the hooks placed on it. Referenced only by those hooks' closures, so it
    dies with the graph; the tracer keeps it in a WeakSet to remove the hooks on exit."""

    __slots__ = ("site", "handles", "reused", "__weakref__")

    def __init__(self, site: BackwardSite) -> None:
        self.site = site
        self.handles: list = []
        self.reused = False


def _positional(args: tuple, kwargs: dict, names: Tuple[str, ...]) -> Dict[str, Any]:
    """Bind a call's arguments to parameter names (cheaper than inspect.signature().bind)."""
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


_TENSOR_BACKWARD = ("self", "gradient", "retain_graph", "create_graph", "inputs")
_AUTOGRAD_BACKWARD = ("tensors", "grad_tensors", "retain_graph", "create_graph", "grad_variables", "inputs")
_AUTOGRAD_GRAD = ("outputs", "inputs", "grad_outputs", "retain_graph", "create_graph")


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    return [value]


class Tracer:
    """Install with `start()`, remove with `stop()`; read `observations` afterwards.

    `watch_all_retained`: graphs kept by `retain_graph=True` that are hooked at every call site
    before sampling starts; `sample_retained_every`: then one graph in this many is hooked.
    """

    def __init__(self, watch_all_retained: float = 64, sample_retained_every: float = 8) -> None:
        self.watch_all_retained = watch_all_retained
        self.sample_retained_every = sample_retained_every
        self._sample = random.Random(0x6C)
        self.observations = Observations()
        self.active = False
        self._torch = None
        self._patches: List[Tuple[Any, str, Any, Any]] = []  # (owner, name, original, wrapper)
        self._handles: list = []
        self._depth = 0
        self._call: Optional[_Call] = None
        # Weakly keyed by identity: id(leaf) -> (weakref(leaf), state); the weakref's callback drops
        # the entry when the leaf dies. (torch's WeakIdKeyDictionary does the same but costs about
        # a microsecond per lookup, which the per-step hot path cannot afford.)
        self._leaves: Dict[int, Tuple[weakref.ref, _LeafState]] = {}
        self._watch: Optional[list] = None  # cached list(self._leaves.values())
        self._optimizers: Dict[int, _Adopted] = {}  # id(optimizer) -> what we track of it
        self._retained: "weakref.WeakSet[_Retained]" = weakref.WeakSet()
        self._pending_sites: Dict[int, BackwardSite] = {}  # sites run since the last step
        self._sites: Dict[tuple, Tuple[list, BackwardSite]] = {}  # call path -> site (see _site)
        self._file_kind: Dict[str, int] = {}
        self._abs: Dict[str, str] = {}
        self._lines: Dict[Tuple[Any, int], Tuple[int, int, int, int]] = {}
        self._saved_types: Dict[type, bool] = {}
        self._is_compiling: Callable[[], bool] = lambda: False
        self._library_dirs: Tuple[str, ...] = ()

    # ------------------------------------------------------------------ install / remove
    def start(self) -> "Tracer":
        """Patch torch and register the hooks. Imports torch (the only place that does)."""
        if self.active:
            return self
        import torch
        import torch.optim.optimizer as optim_mod
        self._torch = torch
        self._watch = None
        compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
        if compiling is not None:
            self._is_compiling = compiling
        self._library_dirs = self._find_library_dirs(torch)
        try:
            self._patch(torch.Tensor, "backward", self._wrap_backward(torch.Tensor.backward, "tensor"))
            self._patch(torch.autograd, "backward", self._wrap_backward(torch.autograd.backward, "autograd"))
            self._patch(torch.autograd, "grad", self._wrap_backward(torch.autograd.grad, "grad"))
            self._patch(torch.optim.Optimizer, "zero_grad",
                        self._wrap_clear(torch.optim.Optimizer.zero_grad, self._optimizer_params))
            self._patch(torch.nn.Module, "zero_grad",
                        self._wrap_clear(torch.nn.Module.zero_grad, self._module_params))
            self._handles.append(optim_mod.register_optimizer_step_pre_hook(self._guard(self._before_step)))
            self._handles.append(optim_mod.register_optimizer_step_post_hook(self._guard(self._after_step)))
        except BaseException:
            self._unpatch()
            raise
        self.active = True
        return self

    def stop(self) -> Observations:
        """Remove every patch and hook, including hooks still sitting on retained graphs."""
        self.active = False
        self._unpatch()
        for retained in list(self._retained):
            for handle in retained.handles:
                handle.remove()
            retained.handles.clear()
        self._retained = weakref.WeakSet()
        self._call = None
        self._depth = 0
        self._watch = None
        self._pending_sites.clear()
        return self.observations

    def _patch(self, owner, name: str, wrapper) -> None:
        original = owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)
        setattr(owner, name, wrapper)
        self._patches.append((owner, name, original, wrapper))

    def _unpatch(self) -> None:
        while self._patches:
            owner, name, original, wrapper = self._patches.pop()
            # Restore only what is still ours; a wrapper someone put on top keeps working because
            # ours passes straight through once the tracer is inactive.
            if getattr(owner, name, None) is wrapper:
                setattr(owner, name, original)
        while self._handles:
            self._handles.pop().remove()

    # ------------------------------------------------------------------ guarding
    def _count_error(self) -> None:
        self.observations.internal_errors += 1
        if self.observations.first_error is None:
            self.observations.first_error = traceback.format_exc(limit=-3).strip().splitlines()[-1]

    def _guard(self, body: Callable) -> Callable:
        """A hook body that can never raise into training."""

        @functools.wraps(body)
        def guarded(*args, **kwargs):
            if not self.active or self._is_compiling():
                return None
            try:
                body(*args, **kwargs)
            except Exception:
                self._count_error()
            return None

        return guarded

    # ------------------------------------------------------------------ backward
    def _wrap_backward(self, original: Callable, kind: str) -> Callable:
        tracer = self

        @functools.wraps(original)
        def traced_backward(*args, **kwargs):
            if tracer._depth or not tracer.active or tracer._is_compiling():
                return original(*args, **kwargs)
            try:
                call = tracer._enter(kind, args, kwargs)
            except Exception:
                tracer._count_error()
                call = None
            tracer._depth += 1
            ok = False
            try:
                result = original(*args, **kwargs)
                ok = True
            finally:
                tracer._depth -= 1
                tracer._call = None
                if call is not None:
                    try:
                        tracer._leave(call, ok)
                    except Exception:
                        tracer._count_error()
            return result

        traced_backward.__gradlint_original__ = original
        return traced_backward

    def _enter(self, kind: str, args: tuple, kwargs: dict) -> _Call:
        torch = self._torch
        if kind == "tensor":
            bound = _positional(args, kwargs, _TENSOR_BACKWARD)
            roots, grads = [bound.get("self")], [bound.get("gradient")]
        elif kind == "autograd":
            bound = _positional(args, kwargs, _AUTOGRAD_BACKWARD)
            roots = _as_list(bound.get("tensors"))
            given = bound.get("grad_tensors")
            if given is None:
                given = bound.get("grad_variables")
            grads = _as_list(given)
        else:
            bound = _positional(args, kwargs, _AUTOGRAD_GRAD)
            roots, grads = _as_list(bound.get("outputs")), _as_list(bound.get("grad_outputs"))
        accumulates = kind != "grad"
        site = self._site("backward" if accumulates else "grad")
        site.calls += 1
        self.observations.backward_calls += 1

        # GL003: a root of more than one element without a gradient (torch raises right after).
        for index, root in enumerate(roots):
            grad = grads[index] if index < len(grads) else None
            if grad is None and isinstance(root, torch.Tensor) and root.numel() != 1:
                site.nonscalar += 1
                if site.nonscalar_shape is None:
                    site.nonscalar_shape = list(root.shape)
                break

        retain_graph, create_graph = bound.get("retain_graph"), bound.get("create_graph")
        # Only an explicit retain_graph=True is a GL002 question; create_graph keeps the graph for
        # higher-order gradients, which is its purpose.
        retain = bool(retain_graph) and not create_graph
        inputs = _as_list(bound.get("inputs"))
        graph_roots = []
        if retain or (accumulates and site.calls == 1):
            graph_roots = [r.grad_fn for r in roots if isinstance(r, torch.Tensor) and r.grad_fn is not None]
        if accumulates:
            if site.calls == 1:
                self._discover_leaves(graph_roots, inputs)
            self._before_accumulate()
        call = _Call(site, site.stack, graph_roots if retain else None, inputs, retain, accumulates)
        self._call = call
        return call

    def _leave(self, call: _Call, ok: bool) -> None:
        if call.accumulates:
            self._after_accumulate(call.site)
            self._pending_sites[id(call.site)] = call.site
        if call.retain and ok:
            site = call.site
            site.retained += 1
            # Once one graph retained here was needed the verdict is settled: stop hooking. Every
            # graph of a site is watched up to `watch_all_retained`; after that many were never
            # reused, a pseudo-random sample (1 in `sample_retained_every`, not periodic, so a
            # periodic reuse cannot dodge it) keeps the per-step cost low on long runs.
            if not site.retained_reused and (
                site.retained_watched < self.watch_all_retained
                or self._sample.random() * self.sample_retained_every < 1.0
            ):
                site.retained_watched += 1
                self._hook_retained(site, call.roots, call.inputs)

    # ------------------------------------------------------------------ call sites
    def _find_library_dirs(self, torch) -> Tuple[str, ...]:
        dirs = set()
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            try:
                dirs.add(os.path.realpath(sysconfig.get_paths()[key]))
            except Exception:
                pass
        return tuple(sorted(d + os.sep for d in dirs))

    def _classify(self, filename: str) -> int:
        if filename.startswith("<"):
            kind = _LIBRARY
        else:
            real = os.path.realpath(filename)
            torch_dir = os.path.dirname(os.path.realpath(self._torch.__file__)) + os.sep
            if real.startswith(torch_dir) or real.startswith(_GRADLINT_DIR + os.sep):
                kind = _INTERNAL
            elif (real.startswith(self._library_dirs) or f"{os.sep}site-packages{os.sep}" in real
                  or f"{os.sep}dist-packages{os.sep}" in real):
                kind = _LIBRARY
            else:
                kind = _USER
            self._abs[filename] = real
        self._file_kind[filename] = kind
        return kind

    def _position(self, frame) -> Tuple[int, int, int, int]:
        """(line, column, end_line, end_column) of the instruction running in `frame`, 1-based."""
        code, lasti = frame.f_code, frame.f_lasti
        key = (code, lasti)
        found = self._lines.get(key)
        if found is None:
            line = frame.f_lineno or 0
            found = (line, 1, line, 1)
            positions = getattr(code, "co_positions", None)  # Python 3.11+
            if positions is not None and lasti >= 0:
                for index, pos in enumerate(positions()):
                    if index == lasti // 2:
                        if pos[0] is not None:
                            found = (pos[0], (pos[2] or 0) + 1, pos[1] or pos[0], (pos[3] or 0) + 1)
                        break
            if len(self._lines) > 100_000:
                self._lines.clear()
            self._lines[key] = found
        return found

    def _site(self, kind: str) -> BackwardSite:
        """The record of the current call site. The frames' (code, instruction) chain is the cache
        key, so the user stack is worked out once per distinct call path."""
        key: list = [kind]
        frame = sys._getframe(3)  # the caller of the wrapped function (_site <- _enter <- wrapper)
        depth = 0
        while frame is not None and depth < _KEY_DEPTH:
            key.append(id(frame.f_code))
            key.append(frame.f_lasti)
            frame = frame.f_back
            depth += 1
        key_t = tuple(key)
        hit = self._sites.get(key_t)
        if hit is not None:
            return hit[1]
        stack, span = self._call_stack()
        site = self.observations.site(stack, kind)
        if site.span is None:
            site.span = span
        # The cached code objects keep their ids from being reused while the entry exists.
        codes = []
        frame = sys._getframe(3)
        while frame is not None and len(codes) < _KEY_DEPTH:
            codes.append(frame.f_code)
            frame = frame.f_back
        if len(self._sites) > 10_000:
            self._sites.clear()
        self._sites[key_t] = (codes, site)
        return site

    def _call_stack(self) -> Tuple[Stack, Optional[Tuple[int, int, int, int]]]:
        """User frames of the current call, innermost first, and the innermost call's span.

        Frames inside torch and gradlint are skipped; frames in the standard library and installed
        packages are kept out of the stack (they cannot be joined to lint findings) unless the call
        has no user frame at all."""
        frame = sys._getframe(1)
        kinds = self._file_kind
        user: list = []
        span = None
        fallback = None
        while frame is not None and len(user) < _STACK_LIMIT:
            filename = frame.f_code.co_filename
            kind = kinds.get(filename)
            if kind is None:
                kind = self._classify(filename)
            if kind != _INTERNAL:
                if kind == _USER:
                    pos = self._position(frame)
                    if span is None:
                        span = pos
                    user.append((self._abs[filename], pos[0]))
                elif fallback is None:
                    fallback = (self._abs.get(filename, filename), frame.f_lineno or 0)
            frame = frame.f_back
        if not user and fallback is not None:
            user.append(fallback)
        return tuple(user), span

    # ------------------------------------------------------------------ gradient state (GL001)
    def _watched(self) -> list:
        if self._watch is None:
            self._watch = list(self._leaves.values())
        return self._watch

    def _state(self, leaf) -> _LeafState:
        """The state of a leaf, starting to watch it if new."""
        key = id(leaf)
        entry = self._leaves.get(key)
        if entry is not None and entry[0]() is leaf:
            return entry[1]
        state = _LeafState()
        state.remember(leaf.grad)
        self._leaves[key] = (weakref.ref(leaf, functools.partial(self._forget, key)), state)
        self._watch = None
        return state

    def _known(self, leaf) -> Optional[_LeafState]:
        entry = self._leaves.get(id(leaf))
        return entry[1] if entry is not None and entry[0]() is leaf else None

    def _forget(self, key: int, ref: weakref.ref) -> None:
        entry = self._leaves.get(key)
        if entry is not None and entry[0] is ref:
            del self._leaves[key]
            self._watch = None

    def _before_accumulate(self) -> None:
        """Classify every watched leaf's gradient just before a backward writes into it."""
        for ref, state in self._watched():
            leaf = ref()
            if leaf is None:
                self._watch = None
                continue
            grad = leaf.grad
            if grad is None:
                if state.grad_ref is not None:  # set to None since we last looked: cleared
                    state.clear()
                    state.grad_ref = None
                state.before = _FRESH
            elif state.untouched(grad):
                state.before = _STALE if state.used else _CARRY
            else:
                # Replaced or changed in place since we last looked (p.grad.zero_(), p.grad = ...):
                # treated as cleared. Precision first: only untouched gradients count as carried.
                if state.grad_ref is not None:
                    state.clear()
                state.remember(grad)
                state.before = _FRESH

    def _after_accumulate(self, site: BackwardSite) -> None:
        """Leaves whose gradient the backward changed: note stale and never-cleared accumulation."""
        stale = False
        for ref, state in self._watched():
            leaf = ref()
            if leaf is None:
                self._watch = None
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
            state.version = version
            before = state.before
            if before == _STALE:
                stale = True
                if state.stale is None:
                    state.stale = site
            elif before == _CARRY and not state.owned and not state.cleared and state.noted is None:
                state.noted = site
                site.loose_leaves += 1
            state.used = False
            state.before = _FRESH
        if stale:
            site.stale_accumulations += 1

    def _discover_leaves(self, roots: list, inputs: list) -> None:
        """Watch the leaves a site's first backward writes into (parameters and other leaves), so
        leaves no optimizer holds are seen too."""
        torch = self._torch
        if inputs:
            for leaf in inputs:
                if isinstance(leaf, torch.Tensor) and leaf.is_leaf and leaf.requires_grad:
                    self._state(leaf)
            return
        seen: set = set()
        todo = list(roots)
        keep = []  # holds the walked nodes alive while their ids are in `seen`
        while todo and len(seen) < _GRAPH_LIMIT:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            keep.append(node)
            leaf = getattr(node, "variable", None)
            if leaf is not None and isinstance(leaf, torch.Tensor):
                self._state(leaf)
            for child, _ in node.next_functions:
                if child is not None:
                    todo.append(child)

    def _params_of(self, optimizer) -> list:
        return [p for group in optimizer.param_groups for p in group["params"]]

    def _adopt(self, optimizer) -> "_Adopted":
        """Watch an optimizer's parameters; re-read when its parameter count changes."""
        key = id(optimizer)
        adopted = self._optimizers.get(key)
        if adopted is not None and adopted.ref() is not optimizer:
            adopted = None
        count = 0
        for group in optimizer.param_groups:
            count += len(group["params"])
        if adopted is None or adopted.count != count:
            if adopted is None:
                stats = OptimizerStats(name=type(optimizer).__name__)
                self.observations.optimizers.append(stats)
                ref = weakref.ref(optimizer, functools.partial(self._forget_optimizer, key))
                adopted = self._optimizers[key] = _Adopted(ref, stats)
            adopted.count = adopted.stats.params = count
            pairs = []
            for param in self._params_of(optimizer):
                state = self._state(param)
                pairs.append((weakref.ref(param), state))
                if not state.owned:
                    state.owned = True
                    if state.noted is not None:  # an optimizer holds it after all
                        state.noted.loose_leaves -= 1
                        state.noted = None
            adopted.pairs = pairs
        return adopted

    def _forget_optimizer(self, key: int, ref: weakref.ref) -> None:
        adopted = self._optimizers.get(key)
        if adopted is not None and adopted.ref is ref:
            del self._optimizers[key]

    def _before_step(self, optimizer, args, kwargs) -> None:
        adopted = self._adopt(optimizer)
        stats = adopted.stats
        stats.steps += 1
        self.observations.steps += 1
        for site in self._pending_sites.values():
            site.steps += 1
        self._pending_sites.clear()
        stale_sites: Dict[int, Tuple[BackwardSite, int]] = {}
        for ref, state in adopted.pairs:
            if state.stale is not None:
                param = ref()
                if param is not None and param.grad is not None:
                    site, count = stale_sites.get(id(state.stale), (state.stale, 0))
                    stale_sites[id(site)] = (site, count + 1)
        if stale_sites:
            stats.stale_steps += 1
            for site, count in stale_sites.values():
                site.stale_steps += 1
                site.stale_params = max(site.stale_params, count)
                if stats.name not in site.stale_optimizers:
                    site.stale_optimizers.append(stats.name)

    def _after_step(self, optimizer, args, kwargs) -> None:
        for ref, state in self._adopt(optimizer).pairs:
            param = ref()
            if param is None:
                continue
            grad = param.grad
            state.remember(grad)
            state.used = grad is not None
            state.stale = None

    # ------------------------------------------------------------------ clears
    def _optimizer_params(self, optimizer) -> list:
        return [(ref(), state) for ref, state in self._adopt(optimizer).pairs]

    def _module_params(self, module) -> list:
        known = self._known
        return [(param, known(param)) for param in module.parameters()]

    def _wrap_clear(self, original: Callable, params_of: Callable) -> Callable:
        tracer = self

        @functools.wraps(original)
        def traced_zero_grad(owner, *args, **kwargs):
            result = original(owner, *args, **kwargs)
            if tracer.active and not tracer._depth and not tracer._is_compiling():
                try:
                    tracer._cleared(params_of(owner))
                except Exception:
                    tracer._count_error()
            return result

        traced_zero_grad.__gradlint_original__ = original
        return traced_zero_grad

    def _cleared(self, params: list) -> None:
        for param, state in params:
            if state is not None and param is not None:
                state.clear()
                state.remember(param.grad)

    # ------------------------------------------------------------------ retained graphs (GL002)
    def _holds_saved(self, node) -> bool:
        """Does this kind of node keep saved tensors (which retain_graph=True keeps alive)?"""
        kind = type(node)
        found = self._saved_types.get(kind)
        if found is None:
            names = dir(kind)
            # Generated nodes expose each saved tensor as `_raw_saved_*`; custom Functions have
            # `saved_tensors`; CopySlices (in-place ops on views) wraps a node that may save some.
            found = (any(n.startswith("_raw_saved_") for n in names) or "saved_tensors" in names
                     or kind.__name__ == "CopySlices")
            self._saved_types[kind] = found
        return found

    def _executed_nodes(self, roots: list, inputs: list) -> list:
        """Nodes of the graph the backward ran: all reachable ones, or with `inputs=` those on a
        path to an input."""
        torch = self._torch
        order: list = []
        seen: Dict[int, Any] = {}
        todo = list(roots)
        while todo and len(seen) < _GRAPH_LIMIT:
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
        targets = set()
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

    def _hook_retained(self, site: BackwardSite, roots: list, inputs: list) -> None:
        if not roots:
            return
        record = _Retained(site)
        tracer = self

        def ran_again(grad_outputs):
            # A later backward runs a node of the retained graph: the retain was needed.
            if record.reused or not tracer.active:
                return None
            try:
                record.reused = True
                site.retained_reused += 1
                if site.reused_by is None:
                    call = tracer._call
                    site.reused_by = call.stack if call is not None else ()
            except Exception:
                tracer._count_error()
            return None

        handles = record.handles
        saved_types = self._saved_types
        if inputs:
            for node in self._executed_nodes(roots, inputs):
                if self._holds_saved(node):
                    handles.append(node.register_prehook(ran_again))
        else:
            # One pass over the graph: every node the backward ran that holds saved tensors.
            seen: set = set()
            keep = []  # holds the walked nodes alive while their ids are in `seen`
            todo = list(roots)
            while todo and len(seen) < _GRAPH_LIMIT:
                node = todo.pop()
                if id(node) in seen:
                    continue
                seen.add(id(node))
                keep.append(node)
                holds = saved_types.get(type(node))
                if holds is None:
                    holds = self._holds_saved(node)
                if holds:
                    handles.append(node.register_prehook(ran_again))
                for child, _ in node.next_functions:
                    if child is not None:
                        todo.append(child)
        if record.handles:
            self._retained.add(record)
