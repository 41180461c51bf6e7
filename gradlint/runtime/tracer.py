"""The tracer: watches what autograd and the optimizers actually do, without changing it.

Mechanisms (see RUNTIME-NOTES.md for why these and not others):

* `torch.Tensor.backward`, `torch.autograd.backward`, `torch.autograd.grad` are wrapped. The
  outermost call is recorded (nested calls, e.g. reentrant checkpointing, are folded into it; calls
  made while `torch.compile` traces are ignored): its user call stack (frames.py), a non-scalar root
  without a gradient (GL003, seen before torch raises), whether it retains its graph (GL002,
  retained.py), and the gradient state of the leaves it writes into (GL001, gradstate.py).
* Global optimizer step pre/post hooks: a step that uses stale gradients confirms GL001; after a
  step the parameters' gradients are marked *used*.
* `Optimizer.zero_grad` / `Module.zero_grad` are wrapped to record explicit clears;
  `clip_grad_norm_` / `clip_grad_value_` and `GradScaler.scale/step/update` for clipping
  (observers.py, with the graph-lifetime observations of the newer rules).

Threads: every Python thread that trains gets its own state (watched leaves, optimizers, call-site
cache, observations), merged when tracing stops. A thread reads only the gradients of leaves its
own backward calls wrote into, never those another thread's autograd may be writing concurrently
(reading them raced with the other thread's clears and could crash the process). Hooks that run on
autograd's device threads find the backward in progress on a global record.

Nothing here keeps a tensor or graph alive: parameters and gradients are held by weak references,
node hooks die with their graph, and the records are plain data (events.py). Every hook body is
guarded: a bug in the tracer is counted in the report and never raised into training.
"""

from __future__ import annotations

import functools
import random
import threading
import traceback
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from gradlint.runtime.closures import Entered, closure_entered, closure_returned
from gradlint.runtime.events import LEAF_DERIVED, LEAF_ROOT, ONE_SAMPLE_ROOT, BackwardSite, Observations, Stack
from gradlint.runtime.frames import CallSites
from gradlint.runtime.gradstate import GradState
from gradlint.runtime.leafroots import LEAF, leaf_rooted
from gradlint.runtime.observers import Lifecycle
from gradlint.runtime.retained import Retained, hook_retained

_DUMMY_THREAD = getattr(threading, "_DummyThread", None)
CARRIED_WATCH = 8  # retained graphs hooked at most at a site that reused its own (carried or built once)


class _Call:
    """The backward call in progress (only the outermost one)."""

    __slots__ = ("site", "stack", "roots", "tensors", "inputs", "retain", "accumulates")

    def __init__(self, site, stack, roots, tensors, inputs, retain, accumulates) -> None:
        self.site = site
        self.stack = stack
        self.roots = roots  # grad_fn of each root, only when the graph is retained
        self.tensors = tensors  # the roots themselves
        self.inputs = inputs
        self.retain = retain
        self.accumulates = accumulates


class _Thread:
    """One thread's tracer state."""

    __slots__ = ("obs", "grads", "life", "depth", "call", "cache")

    def __init__(self, torch_module) -> None:
        self.obs = Observations()
        self.grads = GradState(self.obs, torch_module)
        self.life = Lifecycle(self.grads)
        self.depth = 0
        self.call: Optional[_Call] = None
        self.cache: Dict[tuple, Tuple[list, BackwardSite]] = {}  # call path -> site

    def active(self) -> bool:
        obs = self.obs
        return bool(obs.backward_calls or obs.steps or obs.call_sites or obs.internal_errors)


def _positional(args: tuple, kwargs: dict, names: Tuple[str, ...]) -> Dict[str, Any]:
    """Bind a call's arguments to parameter names (cheaper than inspect.signature().bind)."""
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


_NO_ARGUMENTS: Dict[str, Any] = {}
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
        self.active = False
        self.torch: Any = None
        self.lock = threading.Lock()
        self._patches: List[Tuple[Any, str, Any, Any]] = []  # (owner, name, original, wrapper)
        self._handles: list = []
        self._retained: "weakref.WeakSet[Retained]" = weakref.WeakSet()
        self.retained_sites: set = set()  # ids of the sites with a hooked retained graph (retained.py)
        self._local = threading.local()
        self._threads: List[_Thread] = []
        self._running: set = set()  # idents of threads inside an outermost backward
        self._last_call: Optional[_Call] = None  # for hooks on autograd's device threads
        self._final: Optional[Observations] = None
        self._sites: Optional[CallSites] = None
        self._is_compiling: Callable[[], bool] = lambda: False
        self._global_pre: Any = None  # handle of our global step pre-hook
        self._global_hooks: Any = {}
        # id(optimizer) -> (weak reference to it, handle of our pre-hook of its own)
        self._own_pre: Dict[int, Tuple[weakref.ref, Any]] = {}

    # ------------------------------------------------------------------ threads and results
    def _thread(self) -> _Thread:
        try:
            return self._local.state
        except AttributeError:
            state = _Thread(self.torch)
            with self.lock:
                self._threads.append(state)
            self._local.state = state
            return state

    @property
    def observations(self) -> Observations:
        """Everything observed: after stop() the final record, while tracing a merged snapshot."""
        if self._final is not None:
            return self._final
        if len(self._threads) == 1:
            return self._threads[0].obs
        return self._merged()

    def _merged(self) -> Observations:
        with self.lock:
            threads = list(self._threads)
        if not threads:
            return Observations()
        merged = threads[0].obs
        busy = [t for t in threads if t.active()]
        if len(threads) > 1:
            merged = Observations(ranks=merged.ranks)
            for state in threads:
                merged.absorb(state.obs)
        merged.threads = max(1, len(busy))
        merged.gpus = self._gpus()
        return merged

    def _gpus(self) -> int:
        """GPUs this process sees (what `nn.DataParallel` would replicate over), read after the
        program ran so a script that narrows CUDA_VISIBLE_DEVICES first is counted as it ran."""
        try:
            return int(self.torch.cuda.device_count()) if self.torch is not None else 0
        except Exception:
            return 0

    # ------------------------------------------------------------------ install / remove
    def start(self) -> "Tracer":
        """Patch torch and register the hooks. Imports torch (the only place that does)."""
        if self.active:
            return self
        import torch
        import torch.optim.optimizer as optim_mod

        self.torch = torch
        self._final = None
        self._sites = CallSites(torch)
        compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
        if compiling is not None:
            self._is_compiling = compiling
        self._thread()  # the starting thread's state holds the main record
        try:
            self._patch(torch.Tensor, "backward", self._wrap_backward(torch.Tensor.backward, "tensor"))
            self._patch(torch.autograd, "backward", self._wrap_backward(torch.autograd.backward, "autograd"))
            self._patch(torch.autograd, "grad", self._wrap_backward(torch.autograd.grad, "grad"))
            self._patch(torch.optim.Optimizer, "zero_grad",
                        self._wrap_clear(torch.optim.Optimizer.zero_grad, "optimizer"))
            self._patch(torch.nn.Module, "zero_grad", self._wrap_clear(torch.nn.Module.zero_grad, "module"))
            self._patch_clipping(torch)
            self._global_pre = optim_mod.register_optimizer_step_pre_hook(self._guard(self._step_pre_hook))
            hooks = self._global_pre.hooks_dict_ref()  # torch's global pre-hooks, ours among them
            self._global_hooks = hooks if hooks is not None else {}
            self._handles.append(self._global_pre)
            self._handles.append(optim_mod.register_optimizer_step_post_hook(self._guard(self._after_step)))
        except BaseException:
            self._unpatch()
            raise
        self.active = True
        return self

    def stop(self) -> Observations:
        """Remove every patch and hook, including hooks still sitting on retained graphs."""
        if self._final is not None and not self.active:
            return self._final
        self.active = False
        self._unpatch()
        with self.lock:
            retained = list(self._retained)
            self._retained = weakref.WeakSet()
            self.retained_sites.clear()
        for record in retained:
            for handle in record.handles:
                handle.remove()
            record.handles.clear()
        self._running.clear()
        self._last_call = None
        final = self._merged()
        for state in self._threads:
            state.call = None
            state.depth = 0
            state.grads.pending_sites.clear()
            state.grads.watch = None
            state.life.clips.clear()
        self._final = final
        return final

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
        for _, handle in self._own_pre.values():
            handle.remove()
        self._own_pre.clear()

    # ------------------------------------------------------------------ guarding
    def count_error(self) -> None:
        obs = self._thread().obs
        obs.internal_errors += 1
        if obs.first_error is None:
            obs.first_error = traceback.format_exc(limit=-3).strip().splitlines()[-1]

    def _guard(self, body: Callable) -> Callable:
        """A hook body that can never raise into training."""

        @functools.wraps(body)
        def guarded(*args, **kwargs):
            if not self.active or self._is_compiling():
                return None
            try:
                return body(*args, **kwargs)  # a step pre-hook may hand back new (args, kwargs)
            except Exception:
                self.count_error()
            return None

        return guarded

    def _nested(self, state: _Thread) -> bool:
        """Is a backward starting now part of one already running (reentrant checkpointing)?"""
        if state.depth:
            return True
        # Autograd's device threads (not Python threads) run reentrant inner backward calls of a
        # backward that another thread started.
        return bool(self._running) and _DUMMY_THREAD is not None and isinstance(
            threading.current_thread(), _DUMMY_THREAD)

    # ------------------------------------------------------------------ backward
    def _wrap_backward(self, original: Callable, kind: str) -> Callable:
        tracer = self

        @functools.wraps(original)
        def traced_backward(*args, **kwargs):
            if not tracer.active or tracer._is_compiling():
                return original(*args, **kwargs)
            state = tracer._thread()
            if tracer._nested(state):
                return original(*args, **kwargs)
            try:
                call = tracer._enter(state, kind, args, kwargs)
            except Exception:
                tracer.count_error()
                call = None
            state.depth += 1
            ident = threading.get_ident()
            tracer._running.add(ident)
            error: Optional[BaseException] = None
            try:
                return original(*args, **kwargs)
            except BaseException as raised:
                error = raised
                raise
            finally:
                state.depth -= 1
                tracer._running.discard(ident)
                state.call = None
                if tracer._last_call is call:
                    tracer._last_call = None  # holds the retained roots: must not outlive the call
                if call is not None:
                    try:
                        tracer._leave(state, call, error)
                    except Exception:
                        tracer.count_error()

        traced_backward.__gradlint_original__ = original  # type: ignore[attr-defined]
        return traced_backward

    def _enter(self, state: _Thread, kind: str, args: tuple, kwargs: dict) -> _Call:
        torch = self.torch
        if kind == "tensor" and len(args) == 1:
            # `loss.backward()` or `loss.backward(retain_graph=...)`: the keywords are the names
            bound = kwargs or _NO_ARGUMENTS
            roots, grads = [args[0]], [bound.get("gradient")]
        elif kind == "tensor":
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
        assert self._sites is not None
        # frames above _site's caller: _enter <- traced_backward <- the user's call
        site = self._sites.site("backward" if accumulates else "grad", 2, state.obs, state.cache)
        site.calls += 1
        state.obs.backward_calls += 1

        # GL003: a root of more than one element without a gradient (torch raises right after).
        # A one-element root with dimensions ((1,), (1, 1)) is a batch of one sample: it tells
        # nothing about a root claimed to hold one value per sample.
        for index, root in enumerate(roots):
            grad = grads[index] if index < len(grads) else None
            if grad is None and isinstance(root, torch.Tensor):
                if root.numel() != 1:
                    site.nonscalar += 1
                    if site.nonscalar_shape is None:
                        site.nonscalar_shape = list(root.shape)
                    break
                if root.dim():
                    site.bump(ONE_SAMPLE_ROOT)

        retain_graph, create_graph = bound.get("retain_graph"), bound.get("create_graph")
        # Only an explicit retain_graph=True is a GL002 question; create_graph keeps the graph for
        # higher-order gradients, which is its purpose.
        retain = bool(retain_graph) and not create_graph
        inputs = _as_list(bound.get("inputs")) if bound else []
        graph_roots = []
        if retain or (accumulates and site.calls == 1):
            graph_roots = [r.grad_fn for r in roots if isinstance(r, torch.Tensor) and r.grad_fn is not None]
        if accumulates:
            if site.calls == 1:
                state.grads.discover(graph_roots, inputs)
            state.grads.before_accumulate()
        # graphs kept past their iteration: `torch.autograd.grad` serves as a loop's backward too
        # (its gradients assigned to `.grad` by hand, or applied by a hand-written update)
        state.life.before_backward(site, roots, torch)
        call = _Call(site, site.stack, graph_roots if retain else None, roots, inputs, retain, accumulates)
        state.call = call
        self._last_call = call
        return call

    def _leave(self, state: _Thread, call: _Call, error: Optional[BaseException]) -> None:
        if call.accumulates:
            wrote = state.grads.after_accumulate(call.site)
            rooted = None if wrote or error is not None else leaf_rooted(call.tensors, state.grads.is_owned, self.torch)
            if rooted is not None:  # GL007: this backward started from a leaf loss
                call.site.bump(LEAF_ROOT if rooted == LEAF else LEAF_DERIVED)
                state.grads.leaf_roots += 1
        state.grads.pending_sites[id(call.site)] = call.site  # counts the steps that follow it
        state.life.after_backward(call.site, error, call.accumulates)
        if call.retain and error is None:
            site = call.site
            site.retained += 1
            # Once one graph retained here was needed the verdict is settled: stop hooking (after a
            # few more graphs when the site itself reused one after a step: carried state or a
            # graph built once before the loop, which only later graphs tell apart). Every graph of
            # a site is watched up to `watch_all_retained`; after that many were never reused, a
            # pseudo-random sample (1 in `sample_retained_every`, not periodic, so a periodic reuse
            # cannot dodge it) keeps the per-step cost low on long runs.
            settling = site.retained_reused and site.reused_by == site.stack
            if (settling and site.retained_watched < CARRIED_WATCH) or (not site.retained_reused and (
                site.retained_watched < self.watch_all_retained
                or self._sample.random() * self.sample_retained_every < 1.0
            )):
                site.retained_watched += 1
                hook_retained(self, site, call.roots or [], call.inputs, state.grads, self._current_call,
                              self._retained)

    def _current_call(self) -> Optional[_Call]:
        state = getattr(self._local, "state", None)
        if state is not None and state.call is not None:
            return state.call
        return self._last_call

    # ------------------------------------------------------------------ steps
    def _step_pre_hook(self, optimizer, args, kwargs) -> Optional[Tuple[tuple, dict]]:
        """torch's global step pre-hook. Pre-hooks run in order: global ones, then the optimizer's
        own (`register_step_pre_hook`), and what they do (a clip, a clear) is what the step uses.
        When one runs after ours, the step is taken from a pre-hook of the optimizer's own,
        registered last (and moved to the end again if others were added since)."""
        own = getattr(optimizer, "_optimizer_step_pre_hooks", None)
        if not own and next(reversed(self._global_hooks), None) == self._global_pre.id:
            return self._before_step(optimizer, args, kwargs)  # the common case: nothing runs after ours
        if own is None:
            return self._before_step(optimizer, args, kwargs)
        key = id(optimizer)
        entry = self._own_pre.get(key)
        handle = entry[1] if entry is not None and entry[0]() is optimizer else None
        if handle is None or next(reversed(own), None) != handle.id:
            if handle is not None:
                handle.remove()  # not iterating the optimizer's hooks yet: it may change
            handle = optimizer.register_step_pre_hook(self._guard(self._before_step))
            self._own_pre[key] = (weakref.ref(optimizer), handle)  # removed by _unpatch
        return None

    def _before_step(self, optimizer, args, kwargs) -> Optional[Tuple[tuple, dict]]:
        state = self._thread()
        adopted = state.grads.before_step(optimizer)
        state.life.before_step(adopted, state.grads.assigned)
        state.life.stepping = True
        # A step given a closure (`opt.step(closure)`): the optimizer reads the gradients each time
        # the closure returns (closures.py), so the closure it runs is ours around the user's.
        # (`args` are the step's own: the optimizer first.)
        if len(args) > 1 and callable(args[1]) and not isinstance(args[1], self.torch.Tensor):
            return (args[0], self._wrap_closure(optimizer, args[1])) + tuple(args[2:]), kwargs
        closure = kwargs.get("closure")
        if callable(closure):
            return args, dict(kwargs, closure=self._wrap_closure(optimizer, closure))
        return None

    def _wrap_closure(self, optimizer, closure: Callable) -> Callable:
        tracer = self

        @functools.wraps(closure)
        def traced_closure(*args, **kwargs):
            state = tracer._thread()
            try:
                entered: Optional[Entered] = closure_entered(state.grads, state.obs)
            except Exception:
                tracer.count_error()
                entered = None
            result = closure(*args, **kwargs)
            if entered is not None and tracer.active:
                try:
                    closure_returned(state.grads, state.obs, optimizer, entered)
                except Exception:
                    tracer.count_error()
            return result

        return traced_closure

    def _after_step(self, optimizer, args, kwargs) -> None:
        state = self._thread()
        state.life.stepping = False
        state.grads.after_step(optimizer)

    # ------------------------------------------------------------------ clears
    def _wrap_clear(self, original: Callable, owner_kind: str) -> Callable:
        tracer = self

        @functools.wraps(original)
        def traced_zero_grad(owner, *args, **kwargs):
            result = original(owner, *args, **kwargs)
            if tracer.active and not tracer._is_compiling():
                state = tracer._thread()
                if not state.depth:
                    try:
                        grads = state.grads
                        params = (grads.optimizer_params(owner) if owner_kind == "optimizer"
                                  else grads.module_params(owner))
                        site = grads.cleared(params, lambda: tracer._call_site("clear", state))
                        state.life.after_clear(site)
                    except Exception:
                        tracer.count_error()
            return result

        traced_zero_grad.__gradlint_original__ = original  # type: ignore[attr-defined]
        return traced_zero_grad

    def _call_site(self, kind: str, state: _Thread) -> BackwardSite:
        """The site of a clip or clear call (internal frames are skipped, so depth is not exact)."""
        assert self._sites is not None
        site = self._sites.site(kind, 1, state.obs, state.cache, state.obs.call_sites)
        return site

    # ------------------------------------------------------------------ clipping and scalers
    def _patch_clipping(self, torch) -> None:
        utils = getattr(torch.nn, "utils", None)
        clip_module = getattr(utils, "clip_grad", None)
        # `clip_grads_with_norm_` (torch 2.6+) clips by a total norm the caller computed
        # (`get_total_norm`); torch's own `clip_grad_norm_` calls it under a private name, which
        # stays unpatched, so one clip is seen once.
        for name, limit_name in (("clip_grad_norm_", "max_norm"), ("clip_grad_value_", "clip_value"),
                                 ("clip_grads_with_norm_", "max_norm")):
            original = getattr(utils, name, None)
            if original is None:
                continue
            wrapper = self._wrap_clip(original, limit_name)
            self._patch(utils, name, wrapper)
            if clip_module is not None and getattr(clip_module, name, None) is original:
                self._patch(clip_module, name, wrapper)
        scaler = getattr(getattr(torch, "amp", None), "GradScaler", None)
        if scaler is not None:
            for name in ("scale", "step", "update"):
                if callable(getattr(scaler, name, None)):
                    self._patch(scaler, name, self._wrap_scaler(getattr(scaler, name), name))

    def _wrap_clip(self, original: Callable, limit_name: str) -> Callable:
        tracer = self

        @functools.wraps(original)
        def traced_clip(parameters, *args, **kwargs):
            torch = tracer.torch
            if not tracer.active or tracer._is_compiling() or tracer._thread().depth:
                return original(parameters, *args, **kwargs)
            params = None
            try:
                if isinstance(parameters, torch.Tensor):
                    params = [parameters]
                else:
                    parameters = params = list(parameters)  # a generator is read once: by us
            except Exception:
                params = None
            result = original(parameters, *args, **kwargs)
            if params is not None and tracer.active:
                try:
                    state = tracer._thread()
                    limit = args[0] if args else kwargs.get(limit_name)
                    state.life.clipped(tracer._call_site("clip", state), params, limit)
                except Exception:
                    tracer.count_error()
            return result

        traced_clip.__gradlint_original__ = original  # type: ignore[attr-defined]
        return traced_clip

    def _wrap_scaler(self, original: Callable, name: str) -> Callable:
        tracer = self

        @functools.wraps(original)
        def traced_scaler(scaler, *args, **kwargs):
            if tracer.active and not tracer._is_compiling():
                try:
                    state = tracer._thread()
                    record = state.life.scaler(scaler)
                    if name == "scale":
                        record.scaled = bool(getattr(scaler, "_enabled", False))
                    elif name == "update":
                        record.scaled = False
                    elif name == "step" and args and state.life.clips:
                        # A step the scaler may skip (inf/nan) still shows where the clip was meant for.
                        state.life.before_step(state.grads.adopt(args[0]))
                except Exception:
                    tracer.count_error()
            return original(scaler, *args, **kwargs)

        traced_scaler.__gradlint_original__ = original  # type: ignore[attr-defined]
        return traced_scaler


__all__ = ["Tracer", "Stack"]
