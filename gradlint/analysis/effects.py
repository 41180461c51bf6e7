"""What one call or statement does to gradients: a list of `Event`s (backward / step / clear,
naming the optimizer by its expression text, e.g. `self.opt_g`), or an `Inline` request for a
helper whose body the control-flow layer should follow.

Precision first: something that cannot be identified as an optimizer is never stepped, and a call the
analysis cannot see into that might clear gradients is taken to clear them.
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.backward import backward_call
from gradlint.analysis.calls import _clears_grad_by_assignment, _is_grad, assigns_grad, calls_in
from gradlint.analysis.events import ALL, BACKWARD, CLEAR, STEP, Effect, Event, Inline, Scope, expr_text
from gradlint.analysis.facts import ModuleFacts, _optimizer_class, _qualify
from gradlint.analysis.generators import context_parts, is_context_manager, is_generator
from gradlint.analysis.helper_calls import _GRAD_WIPES, HelperResolver, _helper_local
from gradlint.analysis.manual_updates import _UPDATING_METHODS, PARAMS, updated_by_call, updated_by_statement
from gradlint.analysis.names import dotted
from gradlint.analysis.tree import walk
from gradlint.analysis.object_kinds import (
    ENGINE,
    KNOWN_LIBRARIES,
    OPTIMIZER,
    OTHER,
    SCALER,
    SCHEDULER,
    last_part,
)

# Builtins and calls that never touch gradients, even when handed an optimizer.
_HARMLESS_CALLS = frozenset(
    """print len range enumerate zip isinstance type str int float bool list dict tuple set min max sum
    abs round sorted reversed getattr hasattr id repr format iter next any all map filter super""".split()
)
# Methods that read an optimizer or model they are handed, never clear it.
_HARMLESS_METHODS = frozenset(
    """unscale_ clip_grad_norm_ clip_grad_value_ log log_dict add_scalar add_scalars info debug warning
    state_dict load_state_dict add_param_group save save_state watch append extend toggle_optimizer
    untoggle_optimizer clip_gradients unscale_gradients lr_schedulers optimizers train eval to cuda cpu
    parameters named_parameters modules children""".split()
)
# Names of unresolved helpers that suggest they touch gradients or the optimizer.
_MIGHT_CLEAR_NAME = re.compile(r"zero|clear|reset|wipe|grad|optim|step|update|train|backward", re.IGNORECASE)
_GRAD_CLEAR_METHOD = re.compile(r"(zero|clear|reset|drop|free|wipe)_?\w*grad|grad\w*_(zero|clear|reset)", re.IGNORECASE)
_CLEAR_OR_OPTIMIZER_NAME = re.compile(r"zero|clear|reset|wipe|grad|optim", re.IGNORECASE)
_MODEL_NAME = re.compile(r"model|net|module|params|parameters", re.IGNORECASE)


class Analyzer(HelperResolver):
    """Classifies calls and statements of a module (and of project modules it imports)."""

    def __init__(self, root: ModuleFacts, options, project) -> None:
        self.root = root
        self.options = options
        self.project = project
        self.backward_names = tuple(options.backward_functions)
        self.step_names = tuple(options.step_functions)
        self.clear_names = tuple(options.clear_functions)
        # set when a call could be a helper from another project module; the rule then builds the
        # loop again with `project` set (reading other modules only for loops that need it)
        self.wants_project = False
        self._memo: Dict[int, List[Effect]] = {}  # statement id -> effects, for root-scope code
        self._context_call: Optional[int] = None  # id of the `with` item call being classified


    def branch_events(self, test: cst.BaseExpression, scope: Scope, taken: bool) -> List[Event]:
        """Events that taking (`taken`) or skipping the branch of `if test:` implies by itself;
        none at this layer (the ordering layer adds a scaler known to be off)."""
        return []

    # -- the main entry ----------------------------------------------------------------------
    def call_effects(self, call: cst.Call, scope: Scope) -> List[Effect]:
        """What `call` does to gradients, in order; [] when nothing we track."""
        facts = scope.facts
        func = call.func
        func_text = dotted(func)
        qual = facts.imports.resolve(func) if func_text else None

        if self._matches(func_text, self.clear_names) or self._matches(qual, self.clear_names):
            return [scope.event(CLEAR, ALL, call)]
        if self._matches(func_text, self.backward_names) or self._matches(qual, self.backward_names):
            return [scope.event(BACKWARD, "", call)]
        if self._matches(func_text, self.step_names) or self._matches(qual, self.step_names):
            return [scope.event(STEP, self._configured_step_target(call, scope), call)]

        if qual is not None and qual.endswith("xla_model.optimizer_step") and call.args:
            # torch_xla: xm.optimizer_step(optimizer) reduces gradients and steps the optimizer
            text = dotted(call.args[0].value)
            if text is not None:
                return [scope.event(STEP, scope.subst(text)[0], call)]

        found = backward_call(call, facts.imports)
        if found is not None and _on_self(call) and self._own_method(scope, "backward"):
            return self._helper_effects(call, func_text, qual, scope)  # `def backward(self, loss)` of a trainer
        if found is not None:
            return [scope.event(BACKWARD, "", call)] if found.accumulates else []

        if isinstance(func, cst.Attribute):
            effects = self._method_effects(call, func, scope)
            if effects is not None:
                return effects
        return self._helper_effects(call, func_text, qual, scope)

    def _configured_step_target(self, call: cst.Call, scope: Scope) -> str:
        for arg in call.args:
            text = dotted(arg.value)
            if text is not None:
                bound, kind = scope.kind_of(text)
                if kind == OPTIMIZER:
                    return bound
        return ALL  # steps some optimizer we cannot name: any clear clears it

    def _method_effects(self, call: cst.Call, func: cst.Attribute, scope: Scope) -> Optional[List[Effect]]:
        """Effects of `receiver.method(...)` we know, or None to try it as a helper."""
        method = func.attr.value
        receiver = func.value
        facts = scope.facts
        if method in ("step", "zero_grad") and self._wrapper_method(dotted(receiver), method, facts):
            container = self._container_effects(call, receiver, method, scope)
            if container is not None:
                return container
            return None  # a wrapper class of this module: follow its method's body instead
        if method == "step" and _on_self(call) and self._own_method(scope, "step"):
            return None  # a trainer's own `def step(self, batch)`: follow it as a helper
        if method in _UPDATING_METHODS and updated_by_call(call) is not None:
            return [scope.event(STEP, PARAMS, call)]  # `p.data.add_(p.grad, alpha=-lr)`
        if method == "zero_grad":
            text = dotted(receiver)
            if text is not None:
                bound, kind = scope.kind_of(text)
                if kind == OPTIMIZER:
                    # and every optimizer built only on parameters this one holds (`opt_head` on
                    # `head.parameters()` when `opt_all` holds `[*body.parameters(), *head.parameters()]`)
                    within = self.root.optimizers_within(self.root.optimizer_sources(bound)) - {bound}
                    return [scope.event(CLEAR, target, call) for target in [bound, *sorted(within)]]
                owners = self.root.sources.get(bound) if bound else None
                if owners:
                    # netD.zero_grad() where opt_d = Adam(netD.parameters()): clears opt_d's grads,
                    # and those of optimizers on its submodules (`netD.head.parameters()`)
                    owners = set(owners) | self.root.optimizers_within({bound})
                    return [scope.event(CLEAR, owner, call) for owner in sorted(owners)]
                if bound and kind is None and _another_model(self.root, bound):
                    return []  # `teacher.zero_grad()`: no optimizer of the file holds its parameters
            if text is None and isinstance(receiver, cst.Subscript):
                base = dotted(receiver.value)
                if base is not None and scope.kind_of(base)[1] == OPTIMIZER:
                    # optimizer_t[i].zero_grad(): one optimizer of a list (as optimizer_t[i].step())
                    return [scope.event(CLEAR, expr_text(receiver, facts), call)]
            # model.zero_grad(), self.zero_grad(), anything else: clears every optimizer it may own
            return [scope.event(CLEAR, ALL, call)]
        if method in _GRAD_WIPES and _is_grad(receiver):
            if method in ("fill_", "mul_") and not _zero_arg(call):
                return []
            return [scope.event(CLEAR, ALL, call)]
        if method == "step":
            text = dotted(receiver)
            if text is None and isinstance(receiver, cst.Subscript):
                text = dotted(receiver.value)
                if text is not None:
                    bound, kind = scope.kind_of(text)
                    if kind == OPTIMIZER:
                        return self._step_with_closure(call, expr_text(receiver, facts), scope)
                return []
            if text is None:
                return []
            bound, kind = scope.kind_of(text)
            if kind == OTHER and self._project_optimizer(text, scope):
                kind = OPTIMIZER  # `AnalogSGD(...)`, a torch optimizer subclass of the project
            if kind == OPTIMIZER:
                if _helper_local(text, scope):
                    return []  # a helper's own optimizer, new at every call: its loop is its own
                effects = list(self._step_with_closure(call, bound, scope))
                if effects and self._clearing_optimizer(text, facts):
                    effects.append(scope.event(CLEAR, bound, call))  # its own step() clears its gradients
                return effects
            if kind == SCALER or (kind is None and "scaler" in last_part(text).lower()):
                if call.args and call.args[0].keyword is None:
                    target = call.args[0].value
                    ttext = dotted(target)
                    if ttext is not None:
                        if _helper_local(ttext, scope):
                            return []
                        bound_t, _ = scope.kind_of(ttext)  # GradScaler.step's argument is an optimizer
                        return [scope.event(STEP, bound_t, call)]
                    return [scope.event(STEP, expr_text(target, facts), call)]
                return []
            if kind in (None, OTHER) and facts.instances.get(text) in facts.imports.aliases:
                return None  # `gan = GAN(...)` of another project module: follow its step(batch)
            return []  # schedulers, engines (clear for you), EMA, environments, unknown objects
        if method in ("accumulate",) and call.args:
            # accelerator.accumulate(model): the prepared optimizer's zero_grad/step are gated
            return [scope.event(CLEAR, ALL, call)] if _is_accelerate(receiver, facts) else None
        return None

    def _own_method(self, scope: Scope, name: str) -> bool:
        """Is `self.step(...)` / `self.backward(loss)` a method of the project's class (or of a
        subclass, see `_self_method`) that is neither an optimizer nor an optimizer container (a
        class that defines both `step()` and `zero_grad()`)? Then it is a trainer's method, to
        follow as a helper, not an optimizer's step or a tensor's backward."""
        cls = scope.cls
        if cls is None or cls not in scope.facts.classes or _optimizer_class(scope.facts, cls):
            return False
        if self._find_method(scope.facts, cls, "zero_grad")[0] is not None:
            return False
        func, owner = self._self_method(scope.facts, cls, name)
        return func is not None and (owner is None or self._find_method(scope.facts, owner, "zero_grad")[0] is None)

    def _container_effects(
        self, call: cst.Call, receiver: cst.BaseExpression, method: str, scope: Scope
    ) -> Optional[List[Effect]]:
        """An optimizer container of this module (a class that defines both `step()` and
        `zero_grad()`, such as `Optimizers(*opts)` looping over its optimizers) is an optimizer:
        its `step()` steps it, its `zero_grad()` clears it. None (follow the body) when its
        `step()` clears gradients itself, like a warm-up wrapper that steps and clears."""
        text = dotted(receiver)
        if not text:
            return None
        facts = scope.facts
        cls = facts.instances.get(text)
        if cls is None:
            return None
        step, _ = self._find_method(facts, cls, "step")
        clear, _ = self._find_method(facts, cls, "zero_grad")
        if step is None or clear is None or _clears_in(step):
            return None
        bound, _ = scope.kind_of(text)
        if _helper_local(text, scope):
            return []
        return [scope.event(STEP if method == "step" else CLEAR, bound, call)]

    def _clearing_optimizer(self, text: str, facts: ModuleFacts) -> bool:
        """Was `text` built by an optimizer class of this module (`class AutoClearAdam(Adam)`, or a
        subclass of one) whose `step()`, its own or inherited from a class of this module, clears
        gradients (`self.zero_grad()` before or after `super().step()`)? Each of its steps then
        leaves the gradients cleared."""
        cls = facts.instances.get(text)
        if cls is None or cls not in facts.classes or not _optimizer_class(facts, cls):
            return False
        return self._step_clears(facts, cls)

    def _step_clears(self, facts: ModuleFacts, start: str) -> bool:
        """Does the `step()` that class `start` (of `facts`'s module) runs clear gradients, in its own
        body or in the body of a base's step it reaches through `super().step()`?"""
        cls = start
        for _ in range(6):  # `super().step()` up a chain of the module's classes
            step, owner = self._find_method(facts, cls, "step")
            if step is None or owner is None:
                return False
            if _clears_in(step):
                return True
            # The next class of this module whose step() `super().step()` reaches, if any.
            reached = [b for b in _base_step_classes(facts, owner, step) if self._find_method(facts, b, "step")[0]]
            if not reached:
                return False
            cls = reached[0]
        return False

    def _project_optimizer(self, text: str, scope: Scope) -> bool:
        """Was `text` built by a class of another project module that derives from a torch
        optimizer (`class AnalogSGD(AnalogOptimizerMixin, SGD)`) and whose `step()` does not
        clear gradients? Such an object is an optimizer, not an opaque wrapper."""
        facts = scope.facts
        cls = facts.instances.get(text)
        if cls is None or cls not in facts.imports.aliases:
            return False
        qualname = _qualify(facts.imports, cls)
        if not qualname.startswith(".") and qualname.split(".")[0] in KNOWN_LIBRARIES:
            return False
        self.wants_project = True
        resolved = self.project.resolve_class(facts, qualname) if self.project is not None else None
        if resolved is None:
            return False
        target, name = resolved
        if not _optimizer_class(target, name):
            return False
        return not self._step_clears(target, name)

    def _step_with_closure(self, call: cst.Call, target: str, scope: Scope) -> List[Effect]:
        """`opt.step()` or `opt.step(closure)`: the closure's effects happen inside the step."""
        effects: List[Effect] = []
        closure = None
        for arg in call.args:
            if arg.keyword is None or arg.keyword.value == "closure":
                closure = arg.value
                break
        if closure is not None:
            if isinstance(closure, cst.Lambda):
                effects.extend(self.expr_effects(closure.body, scope))
            else:
                text = dotted(closure)
                resolved = self._resolve_function(text, scope) if text else None
                if resolved is not None:
                    effects.append(resolved(call))
                elif text is not None and "closure" in text.lower():
                    effects.append(scope.event(CLEAR, target, call))  # a closure we cannot see: may clear
                else:
                    # `diffopt.step(loss)` (higher), `opt.step(batch)`: not torch.optim's step(closure)
                    return []
        effects.append(scope.event(STEP, target, call))
        return effects

    # -- helpers -------------------------------------------------------------------------------
    def _helper_effects(
        self, call: cst.Call, func_text: Optional[str], qual: Optional[str], scope: Scope
    ) -> List[Effect]:
        if func_text is not None:
            resolved = self._resolve_function(func_text, scope, call)
            if resolved is not None:
                inline = resolved(call)
                if self.relevant(inline) or self._hands_optimizer(call, scope):
                    if inline.scope.func is not None and is_generator(inline.scope.func):
                        return self._generator_effects(inline, call, func_text, qual, scope)
                    return [inline]  # (handed the optimizer: follow it, whatever it does with it)
                return []
            if func_text in _HARMLESS_CALLS:
                return []
        return self._opaque_effects(call, func_text, qual, scope)

    def _generator_effects(
        self, inline: Inline, call: cst.Call, func_text: Optional[str], qual: Optional[str], scope: Scope
    ) -> List[Effect]:
        """A call of a generator function runs none of its body. As the item of a `with` (a
        `@contextmanager` whose `yield` splits its body simply), the control-flow layer runs the
        part before the `yield` on entering the block and the rest on leaving it; any other use
        (`next(gen)`, iterating it) runs the body at times not followed here: a call we cannot
        see into."""
        func = inline.scope.func
        if (func is not None and id(call) == self._context_call
                and is_context_manager(func, inline.scope.facts.imports) and context_parts(func) is not None):
            return [inline]
        return self._opaque_effects(call, func_text, qual, scope)

    def _opaque_effects(
        self, call: cst.Call, func_text: Optional[str], qual: Optional[str], scope: Scope
    ) -> List[Effect]:
        """A call we cannot see into: it may clear what it is handed (precision first)."""
        facts = scope.facts
        if qual is not None and qual.split(".")[0] == "torch":
            return []
        if isinstance(call.func, cst.Attribute):
            if _GRAD_CLEAR_METHOD.search(call.func.attr.value):
                # trainer.reset_grads(), engine.zero_all_grads(): a method we cannot see, named so
                return [scope.event(CLEAR, ALL, call)]
            if call.func.attr.value in _HARMLESS_METHODS:
                return []
            receiver = dotted(call.func.value)
            if receiver is not None and scope.kind_of(receiver)[1] in (SCALER, SCHEDULER, ENGINE, OTHER):
                return []  # scaler.unscale_(opt), scheduler helpers: they read the optimizer
        library = qual is not None and not qual.startswith(".") and qual.split(".")[0] in KNOWN_LIBRARIES
        if library and qual is not None and not _MIGHT_CLEAR_NAME.search(last_part(qual)):
            return []  # get_scheduler(optimizer=...), wandb.watch(model): they do not clear
        effects: List[Effect] = []
        handed_model = False
        for arg in call.args:
            text = dotted(arg.value)
            if text is None:
                continue
            bound, kind = scope.kind_of(text)
            if kind == OPTIMIZER:
                effects.append(scope.event(CLEAR, bound, call))
            elif text in facts.sources or bound in self.root.sources or _MODEL_NAME.search(last_part(text)):
                handed_model = True
        if _escapes(facts)[0] and _callable_value(call.func, facts):
            effects.extend(self._escaped_clears(call, scope))
        if func_text is None:
            return effects
        name_says = bool(_MIGHT_CLEAR_NAME.search(last_part(func_text)))
        if id(call) == self._context_call or (func_text.count(".") >= 2 and func_text.startswith("self.")):
            # `with self.train_context(...)`: a context manager sets modes; `self.pbar.update(1)`:
            # a method of an object the instance holds, not one of its helpers. Only a name that
            # speaks of gradients or optimizers counts for these.
            name_says = bool(_CLEAR_OR_OPTIMIZER_NAME.search(last_part(func_text)))
        if self._maybe_project_helper(func_text, qual, scope) and (handed_model or name_says):
            effects.append(scope.event(CLEAR, ALL, call))
        elif "." not in func_text and name_says and func_text not in facts.classes:
            # a callable we cannot see (a parameter, a local `zero_fn = ...`) named like a clear
            effects.append(scope.event(CLEAR, ALL, call))
        return effects

    def _escaped_clears(self, call: cst.Call, scope: Scope) -> List[Effect]:
        """Clears a call of a callable value may run: the module hands a bound `zero_grad` around
        as a value (`functools.partial(opt.zero_grad, set_to_none=True)` stored in a dict of
        callbacks, `hooks.append(model.zero_grad)`), and a callable we cannot resolve
        (`for fn in hooks["before_backward"]: fn()`) may be it. Each such optimizer may be cleared
        there; an escaped `model.zero_grad`, or one of a name the calling function never mentions
        (handed in from its caller), may clear every optimizer. Nothing when no `zero_grad`
        escapes: an opaque callback alone clears nothing."""
        out: List[Effect] = []
        func = scope.func
        seen = None if func is None else {n.value for n in walk(func) if type(n) is cst.Name}  # type: ignore[attr-defined]
        for text in _escapes(scope.facts)[0]:
            bound, kind = scope.kind_of(text)
            if seen is not None and text.split(".")[0] not in seen:
                # handed in from outside the function (`train(..., before_batch=opt.zero_grad)`):
                # the function knows that optimizer by another name, if at all
                targets = [ALL]
            elif kind == OPTIMIZER:
                targets = [bound]
            else:
                targets = sorted(self.root.sources.get(bound, ())) or [ALL]
            out.extend(scope.event(CLEAR, target, call) for target in targets)
        return out

    def _maybe_project_helper(self, func_text: str, qual: Optional[str], scope: Scope) -> bool:
        """Could this unresolved call be one of the project's own helpers?"""
        facts = scope.facts
        head = func_text.split(".")[0]
        if head in ("self", "cls"):
            return True  # a method we could not find (inherited from another module)
        if head in facts.imports.aliases:
            target = facts.imports.aliases[head]
            if target.startswith("."):
                return True
            return target.split(".")[0] not in KNOWN_LIBRARIES
        if "." in func_text:
            return False  # a method of some object: not a helper
        return facts.star_import

    # -- statements ------------------------------------------------------------------------------
    def context_effects(self, expr: cst.CSTNode, scope: Scope) -> List[Effect]:
        """Effects of a `with` item (`with self.train_context(ctx):`): as `expr_effects`, except
        that the context manager's own call, unseen, is not taken for a clear by a name such as
        `train_context` (context managers set modes: autocast, no_sync, train contexts)."""
        self._context_call = id(expr) if isinstance(expr, cst.Call) else None
        try:
            return self.expr_effects(expr, scope)
        finally:
            self._context_call = None

    def expr_effects(self, expr: cst.CSTNode, scope: Scope) -> List[Effect]:
        """Effects of every call in `expr`, in evaluation order (arguments before the call)."""
        effects: List[Effect] = []
        for call in calls_in(expr):
            effects.extend(self.call_effects(call, scope))
        return effects

    def statement_effects(self, stmt: cst.BaseSmallStatement, scope: Scope) -> List[Effect]:
        """Effects of one small statement; memoised for the analysed file's own code (outer and
        inner loops see the same statements)."""
        memo = not scope.chain and not scope.binding
        if memo and id(stmt) in self._memo:
            return list(self._memo[id(stmt)])
        effects = self.expr_effects(stmt, scope)
        if _clears_grad_by_assignment(stmt):
            effects.append(scope.event(CLEAR, ALL, stmt))
        elif updated_by_statement(stmt) is not None:
            effects.append(scope.event(STEP, PARAMS, stmt))  # `p.data -= lr * p.grad`
        if memo:
            self._memo[id(stmt)] = list(effects)
        return effects



def _on_self(call: cst.Call) -> bool:
    """Is the call `self.<method>(...)`?"""
    func = call.func
    return isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self"


def _zero_arg(call: cst.Call) -> bool:
    """Is the first argument the literal 0 (`fill_(0)`, `mul_(0.0)`, `fill_(0x0)`)?"""
    if not call.args or not isinstance(call.args[0].value, (cst.Integer, cst.Float)):
        return False
    literal = call.args[0].value.value.replace("_", "")
    try:
        return float(literal) == 0.0
    except ValueError:
        try:
            return int(literal, 0) == 0
        except ValueError:
            return False


def _is_accelerate(receiver: cst.BaseExpression, facts: ModuleFacts) -> bool:
    text = dotted(receiver) or ""
    return "accelerator" in last_part(text).lower() or "accelerate" in (facts.imports.resolve(receiver) or "")


def _base_step_classes(facts: ModuleFacts, owner: str, step: cst.FunctionDef) -> List[str]:
    """The bases of `owner` that are classes of this module, in order, when its `step()` runs a
    base's step (`super().step()`); the one base named, for `Base.step(self, ...)`."""
    info = facts.classes.get(owner)
    if info is None:
        return []
    bases = [last_part(base) for base in info.bases if last_part(base) in facts.classes]
    for call in calls_in(step):
        func = call.func
        if not isinstance(func, cst.Attribute) or func.attr.value != "step":
            continue
        receiver = func.value
        if isinstance(receiver, cst.Call) and dotted(receiver.func) == "super":
            return bases
        name = dotted(receiver)
        if name is not None and name in bases:
            return [name]
    return []


def _clears_in(func: cst.FunctionDef) -> bool:
    """Does a method clear gradients itself (a `zero_grad()` call, a `.grad` wipe or assignment)?"""
    for call in calls_in(func):
        if isinstance(call.func, cst.Attribute) and (
            call.func.attr.value == "zero_grad" or (call.func.attr.value in _GRAD_WIPES and _is_grad(call.func.value))
        ):
            return True
    return assigns_grad(func.body)


_ESCAPES: Dict[int, Tuple[List[str], FrozenSet[str]]] = {}  # ModuleFacts.serial -> _escapes()


def _escapes(facts: ModuleFacts) -> Tuple[List[str], FrozenSet[str]]:
    """(texts of the receivers whose bound `zero_grad` the module hands on as a value, names that
    may hold a callable handed around). A `zero_grad` escapes when it is an argument of a call
    (`partial(opt.zero_grad)`, `callbacks.append(opt.zero_grad)`), an element of a container
    literal or the value assigned (`clear = opt.zero_grad`); a bare `opt.zero_grad` statement is a
    no-op, not an escape. The names: loop targets, parameters, and names assigned an element of a
    container, a `zero_grad` or a call handed one (`clear = partial(opt.zero_grad)`)."""
    found = _ESCAPES.get(facts.serial)
    if found is not None:
        return found
    texts: List[str] = []
    names: set = set()
    for node in walk(facts.module):
        kind = type(node)
        values: List[cst.BaseExpression] = []
        if kind is cst.Call:
            values = [arg.value for arg in node.args]  # type: ignore[attr-defined]
        elif kind in (cst.List, cst.Tuple, cst.Set):
            values = [element.value for element in node.elements]  # type: ignore[attr-defined]
        elif kind is cst.Dict:
            values = [element.value for element in node.elements if hasattr(element, "value")]  # type: ignore[attr-defined]
        elif kind in (cst.Assign, cst.AnnAssign) and node.value is not None:  # type: ignore[attr-defined]
            values = [node.value]  # type: ignore[attr-defined]
            if type(node.value) is cst.Subscript or _hands_zero_grad(node.value):  # type: ignore[attr-defined]
                targets = [t.target for t in node.targets] if kind is cst.Assign else [node.target]  # type: ignore[attr-defined]
                names.update(t.value for t in targets if type(t) is cst.Name)  # type: ignore[attr-defined]
        elif kind is cst.For:
            names.update(n.value for n in walk(node.target) if type(n) is cst.Name)  # type: ignore[attr-defined]
        elif kind is cst.Param:
            names.add(node.name.value)  # type: ignore[attr-defined]
        for value in values:
            if type(value) is cst.Attribute and value.attr.value == "zero_grad":  # type: ignore[attr-defined]
                text = dotted(value.value)  # type: ignore[attr-defined]
                if text is not None and text not in texts:
                    texts.append(text)
    if len(_ESCAPES) > 64:
        _ESCAPES.clear()  # keep no memo of long-gone parses
    found = _ESCAPES[facts.serial] = (texts, frozenset(names))
    return found


def _hands_zero_grad(value: cst.BaseExpression) -> bool:
    """`opt.zero_grad`, or a call given it (`functools.partial(opt.zero_grad, set_to_none=True)`)."""
    if type(value) is cst.Attribute:
        return value.attr.value == "zero_grad"  # type: ignore[attr-defined]
    if type(value) is cst.Call:
        return any(_hands_zero_grad(arg.value) for arg in value.args)  # type: ignore[attr-defined]
    return False


def _callable_value(func: cst.BaseExpression, facts: ModuleFacts) -> bool:
    """Is the called thing a callable handed around that the analysis cannot resolve to code: a
    name of `_escapes` that no `def`, class or import of the module binds (a loop's `fn`, a
    parameter, `cb = partial(...)`), an element of a container (`hooks["step"]()`), or what
    another call returned?"""
    if type(func) is cst.Name:
        name = func.value  # type: ignore[attr-defined]
        return (
            name in _escapes(facts)[1]
            and facts.kind_of(name) is None  # not a module, an optimizer, a loss of known kind
            and name not in facts.functions
            and name not in facts.classes
            and name not in facts.imports.aliases
        )
    return type(func) in (cst.Subscript, cst.Call)


def _another_model(facts: ModuleFacts, text: str) -> bool:
    """Is `text` a model none of the file's optimizers holds, so that its `zero_grad()` clears none
    of them? Only when that is shown: every optimizer the file builds has known parameter sources
    (`Adam(student.parameters())`), none of them is `text`, a part of it or a whole it is part of,
    and every assignment of `text` builds a new object (`copy.deepcopy(student)`, `Teacher()`),
    not another name for a model an optimizer holds."""
    if not facts.sources or text in facts.sources:
        return False
    if any(m.startswith(text + ".") or text.startswith(m + ".") for m in facts.sources):
        return False
    held = {owner for owners in facts.sources.values() for owner in owners}
    if any(kind == OPTIMIZER and name not in held for name, kind in facts.kinds.items()):
        return False  # an optimizer built on a list we cannot read: it may hold this model
    values = [
        node.value  # type: ignore[attr-defined]
        for node in walk(facts.module)
        if type(node) is cst.Assign
        for target in node.targets  # type: ignore[attr-defined]
        if dotted(target.target) == text
    ]
    heads = {m.split(".")[0] for m in facts.sources} | {n.split(".")[0] for n in held}
    return bool(values) and all(_new_object(value, heads) for value in values)


def _new_object(value: cst.BaseExpression, held: set) -> bool:
    """`copy.deepcopy(m)`, `Teacher(...)`, `nn.Linear(...)`, possibly followed by `.to(device)`,
    `.eval()` or `.requires_grad_(False)`; a constructor handed one of the `held` models or an
    optimizer (`DDP(model)`, `Wrapper(student)`, `ScheduledOptim(optim)`) wraps it rather than
    making a new one."""
    while type(value) is cst.Call and type(value.func) is cst.Attribute:  # type: ignore[attr-defined]
        func = value.func  # type: ignore[attr-defined]
        if func.attr.value not in ("to", "cuda", "cpu", "eval", "train", "requires_grad_", "float", "half"):
            break
        value = func.value
    if type(value) is not cst.Call:
        return False
    name = dotted(value.func) or ""  # type: ignore[attr-defined]
    last = name.rsplit(".", 1)[-1]
    if last == "deepcopy":
        return True
    if not last[:1].isupper():
        return False
    return not any(type(n) is cst.Name and n.value in held for arg in value.args for n in walk(arg))  # type: ignore[attr-defined]
