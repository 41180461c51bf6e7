"""Following helpers: which function a call names (same module, nested defs, `self.` methods,
methods of instances of the module's classes, project modules through `gradlint.analysis.project`),
how its parameters bind to the caller's arguments, and whether it touches gradients at all.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

import libcst as cst

from gradlint.analysis.backward import backward_call
from gradlint.analysis.calls import assigned_texts
from gradlint.analysis.events import Inline, Scope
from gradlint.analysis.facts import ModuleFacts, _optimizer_class, _qualify, _statement_children, _visible_def
from gradlint.analysis.manual_updates import has_manual_update
from gradlint.analysis.names import dotted
from gradlint.analysis.object_kinds import KNOWN_LIBRARIES, OPTIMIZER, last_part, name_kind

# Method names that may step an optimizer or run a backward pass.
_STEPPY_METHODS = frozenset({"step", "backward", "manual_backward", "optimizer_step"})
# Names of project helpers that may step or run a backward.
_STEPPY_NAME = re.compile(r"step|train|backward|update|optim|fit|learn|epoch|batch", re.IGNORECASE)
# Methods on a `.grad` tensor that wipe it.
_GRAD_WIPES = frozenset({"zero_", "detach_", "fill_", "mul_"})


class HelperResolver:
    """How an `Analyzer` finds and follows helpers (a mixin: it owns the state)."""

    project = None
    root: ModuleFacts
    wants_project = False
    # the class of the analysed object, when a loop of a base class is judged for one subclass
    receiver: Optional[str] = None
    ambiguous = False  # a `self.` call resolved differently in the classes of the loop's family
    loop_class: Optional[str] = None  # the class of the method holding the analysed loop, if any
    abstract_hit = False  # with `receiver`: a `self.` method the receiver lacks or leaves abstract
    step_names: Tuple[str, ...] = ()
    backward_names: Tuple[str, ...] = ()
    clear_names: Tuple[str, ...] = ()

    # -- configured helper names -------------------------------------------------------------
    @staticmethod
    def _matches(text: Optional[str], names: Sequence[str]) -> bool:
        if not text or not names:
            return False
        return any(text == n or text.endswith("." + n) or n.endswith("." + text) for n in names)


    def _resolve_function(self, text: str, scope: Scope, call: Optional[cst.Call] = None):
        """A factory `site -> Inline` for the function `text` names, or None."""
        facts = scope.facts
        parts = text.split(".")
        func: Optional[cst.FunctionDef] = None
        target_facts = facts
        cls: Optional[str] = None
        is_method = False
        if len(parts) == 2 and parts[0] in ("self", "cls") and scope.cls is not None:
            func, cls = self._root_override(facts, scope.cls, parts[1])
            if func is not None:
                target_facts = self.root  # a project base's method calling what the file's subclass overrides
            else:
                func, cls = self._self_method(facts, scope.cls, parts[1])
            if func is None:  # inherited from a base class of another project module
                target_facts, func, cls = self._project_method(facts, scope.cls, parts[1])
            is_method = True
        elif len(parts) >= 2 and facts.instances.get(".".join(parts[:-1])) in facts.classes:
            # trainer = Trainer(...); trainer.train_step(batch): a class of this module
            func, cls = self._find_method(facts, facts.instances[".".join(parts[:-1])], parts[-1])
            is_method = True
        elif len(parts) >= 2 and facts.instances.get(".".join(parts[:-1])) in facts.imports.aliases:
            # from trainer import Trainer; t = Trainer(...); t.train_step(batch): a project class
            target_facts, func, cls = self._project_method(facts, facts.instances[".".join(parts[:-1])], parts[-1])
            is_method = True
        elif len(parts) == 1 and parts[0] not in facts.imports.aliases:
            func = _visible_def(facts, scope.func, parts[0])
        if func is None and parts[0] in facts.imports.aliases:
            qualname = _qualify(facts.imports, text)
            if qualname.startswith(".") or qualname.split(".")[0] not in KNOWN_LIBRARIES:
                self.wants_project = True  # a helper another module of the project may define
                found = self.project.resolve_function(facts, qualname) if self.project is not None else None
                if found is not None:
                    target_facts, func = found
        if func is None:
            return None
        params = _param_names(func, skip_self=is_method)
        key = (id(target_facts), id(func))

        def make(site: cst.Call) -> Inline:
            binding = _bind_args(params, site, scope) if site is not None and isinstance(site, cst.Call) else ()
            if is_method:
                receiver, _ = scope.subst(".".join(parts[:-1]))
                if receiver != "self":
                    binding = binding + (("self", receiver),)  # `self.opt` inside is `trainer.opt`
            inner = Scope(
                facts=target_facts,
                root=scope.root,
                binding=binding,
                cls=cls if is_method else None,
                chain=scope.chain + ((site, scope.local),),
                func=func,
            )
            return Inline(func.body, inner, site, key)

        return make

    def _context(self) -> Optional[str]:
        """What `self.` calls resolve against beyond the code itself (cache keys of `relevant` and
        `_steppy`, whose caches live on the helper module's facts, shared between files)."""
        if self.receiver is None and self.loop_class is None:
            return None
        return f"{self.root.serial}:{self.receiver}:{self.loop_class}"

    def _self_method(self, facts: ModuleFacts, cls: str, name: str):
        """(method, its class) that `self.name(...)` runs in a method of `cls`, over the class
        hierarchy of the module: `BaseTrainer.train` calling `self.train_step(batch)` that only a
        subclass defines (or that the base leaves abstract) runs the subclass's method. With
        `receiver` set (the analysed object is an instance of that subclass of `cls`), its method;
        else the one concrete method the classes of the family agree on. When they differ the
        base's own is returned and `ambiguous` is set, so that the caller may judge the loop once
        per receiver class (GL001's `_receivers`)."""
        if self.receiver is not None and facts is self.root and _derives(facts, self.receiver, cls):
            func, owner = self._find_method(facts, self.receiver, name)
            if (func is None or _abstract(func)) and self._overrides(facts, cls, name):
                self.abstract_hit = True  # this class cannot be the object: it lacks the method
            return func, owner
        func, owner = self._find_method(facts, cls, name)
        candidates = self._overrides(facts, cls, name)
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1 and facts is self.root:
            self.ambiguous = True
        return func, owner

    def _root_override(self, facts: ModuleFacts, cls: str, name: str):
        """In a method of `cls`, a base class of another project module, `self.name(...)` of an
        object of the analysed file's class (`loop_class`, or `receiver`) that derives from `cls`
        and defines or inherits `name` in this file: (that method, its class), else (None, None)."""
        obj = self.receiver or self.loop_class
        if facts is self.root or obj is None or not _inherits_name(self.root, obj, cls):
            return None, None
        func, owner = self._find_method(self.root, obj, name)
        if func is None or _abstract(func):
            return None, None
        return func, owner

    def _overrides(self, facts: ModuleFacts, cls: str, name: str) -> List[Tuple[cst.FunctionDef, str]]:
        """The distinct concrete methods `name` resolves to for `cls` and its subclasses in the
        module (abstract ones, `raise NotImplementedError`, left out)."""
        found: List[Tuple[cst.FunctionDef, str]] = []
        for member in family(facts, cls):
            func, owner = self._find_method(facts, member, name)
            if func is not None and owner is not None and not _abstract(func):
                if all(func is not seen for seen, _ in found):
                    found.append((func, owner))
        return found

    def _wrapper_method(self, receiver: Optional[str], method: str, facts: ModuleFacts) -> bool:
        """Is `receiver` an instance of a class of this module that defines `method` and is not
        itself an optimizer (`class Trainer: def step(self): ...` vs `class MySGD(Optimizer)`)?"""
        if receiver is None:
            return False
        cls = facts.instances.get(receiver)
        if cls is None or cls not in facts.classes or _optimizer_class(facts, cls):
            return False
        found, _ = self._find_method(facts, cls, method)
        return found is not None

    def _project_method(self, facts: ModuleFacts, cls: str, name: str, depth: int = 0):
        """(defining module's facts, method, its class) for method `name` of class `cls` as seen
        from `facts`: the class (or a base) imported from another project module. Asks for the
        project's modules (`wants_project`); (facts, None, None) when not found."""
        if depth > 5:
            return facts, None, None
        info = facts.classes.get(cls)
        if info is not None:
            found, owner = self._find_method(facts, cls, name)
            if found is not None:
                return facts, found, owner
            for base in info.bases:
                found_facts, found, owner = self._project_method(facts, last_part(base), name, depth + 1)
                if found is not None:
                    return found_facts, found, owner
            return facts, None, None
        if cls not in facts.imports.aliases:
            return facts, None, None
        qualname = _qualify(facts.imports, cls)
        if not qualname.startswith(".") and qualname.split(".")[0] in KNOWN_LIBRARIES:
            return facts, None, None
        self.wants_project = True
        resolved = self.project.resolve_class(facts, qualname) if self.project is not None else None
        if resolved is None:
            return facts, None, None
        return self._project_method(resolved[0], resolved[1], name, depth + 1)

    @staticmethod
    def _find_method(facts: ModuleFacts, cls: str, name: str, depth: int = 0):
        info = facts.classes.get(cls)
        if info is None or depth > 5:
            return None, None
        if name in info.methods:
            return info.methods[name], cls
        for base in info.bases:
            found, owner = HelperResolver._find_method(facts, last_part(base), name, depth + 1)
            if found is not None:
                return found, owner
        return None, None

    def relevant(self, inline: Inline, _seen: Optional[set] = None) -> bool:
        """Does the helper (transitively) do anything to gradients? Memoised per function."""
        facts = inline.scope.facts
        cache = facts._relevant
        key = (id(inline.body), self._context())
        if key in cache:
            return cache[key]
        seen = _seen if _seen is not None else set()
        if key in seen:
            return False
        seen.add(key)
        inline_func = inline.scope.func
        params = set(_param_names(inline_func, skip_self=False)) if inline_func is not None else set()
        result = False
        calls, grad_assign = facts.summary(inline.body)
        for call in calls:
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value in (
                "step",
                "zero_grad",
                "backward",
                "manual_backward",
                *_GRAD_WIPES,
                "accumulate",
            ):
                result = True
            elif backward_call(call, facts.imports) is not None:
                result = True
            elif any(
                name in params and name_kind(name) == OPTIMIZER
                for name in (dotted(a.value) for a in call.args)
                if name
            ):
                result = True  # hands its optimizer parameter on (to something that may clear it)
            else:
                text = dotted(func)
                if text and (self._matches(text, self.clear_names + self.step_names + self.backward_names)):
                    result = True
                elif text:
                    resolved = self._resolve_function(text, inline.scope)
                    if resolved is not None and self.relevant(resolved(call), seen):
                        result = True
            if result:
                break
        if not result:
            result = grad_assign or has_manual_update(inline.body)
        cache[key] = result
        return result

    def may_step_or_backward(self, loop: cst.CSTNode, scope: Scope) -> bool:
        """A cheap syntactic gate before building a loop's graph: could anything in the loop step
        an optimizer or run a backward (directly, through a helper of this module, or through a
        project helper whose name or arguments suggest training)?"""
        return self._steppy(scope.facts.summary(loop)[0], scope, set())

    def _steppy(self, calls: List[cst.Call], scope: Scope, seen: set) -> bool:
        facts = scope.facts
        for call in calls:
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value in _STEPPY_METHODS:
                return True
            if backward_call(call, facts.imports) is not None:
                return True
            text = dotted(func)
            if not text:
                continue
            if self._matches(text, self.step_names + self.backward_names):
                return True
            if text.split(".")[0] in facts.imports.aliases:
                qualname = _qualify(facts.imports, text)
                if qualname.startswith(".") or qualname.split(".")[0] not in KNOWN_LIBRARIES:
                    if _STEPPY_NAME.search(last_part(text)) or self._hands_optimizer(call, scope):
                        return True  # maybe a project helper that trains: decided on the graph
                continue
            if self._steppy_override(text, scope, seen):
                return True
            saved, self.wants_project = self.wants_project, False
            resolved = self._resolve_function(text, scope)
            wanted, self.wants_project = self.wants_project, saved
            if resolved is None:
                if wanted and (_STEPPY_NAME.search(last_part(text)) or self._hands_optimizer(call, scope)):
                    return True  # a method of a project class of another module: decided on the graph
                continue
            inline = resolved(call)
            key = (id(inline.body), self._context())
            cached = facts._steppy.get(key)
            if cached is None:
                if key in seen:
                    continue
                seen.add(key)
                cached = self._steppy(inline.scope.facts.summary(inline.body)[0], inline.scope, seen)
                facts._steppy[key] = cached
            if cached:
                return True
        return False

    def _steppy_override(self, text: str, scope: Scope, seen: set) -> bool:
        """`self.train_step(batch)` in a base class whose subclasses define it differently: could
        any of their methods step or run a backward?"""
        parts = text.split(".")
        if len(parts) != 2 or parts[0] != "self" or scope.cls is None or scope.facts is not self.root:
            return False
        candidates = self._overrides(scope.facts, scope.cls, parts[1])
        if len(candidates) < 2:
            return False
        for func, _owner in candidates:
            if id(func) in seen:
                continue
            seen.add(id(func))
            inner = Scope(facts=scope.facts, root=scope.root, cls=_owner, func=func)
            if self._steppy(scope.facts.summary(func.body)[0], inner, seen):
                return True
        return False

    def _hands_optimizer(self, call: cst.Call, scope: Scope) -> bool:
        for arg in call.args:
            text = dotted(arg.value)
            if text is not None and scope.kind_of(text)[1] == OPTIMIZER:
                return True
        return False


def family(facts: ModuleFacts, cls: str) -> List[str]:
    """`cls` and the classes of the module that derive from it (directly or not). Memoised."""
    found = facts._families.get(cls)
    if found is None:
        found = [cls] + [name for name in facts.classes if name != cls and _derives(facts, name, cls)]
        facts._families[cls] = found
    return found


def _derives(facts: ModuleFacts, name: str, base: str, depth: int = 0) -> bool:
    """Is class `name` of the module `base` or a subclass of it (bases named in the module)?"""
    if name == base:
        return True
    info = facts.classes.get(name)
    if info is None or depth > 5:
        return False
    return any(_derives(facts, last_part(b), base, depth + 1) for b in info.bases if last_part(b) != name)


def _inherits_name(facts: ModuleFacts, name: str, base: str, depth: int = 0) -> bool:
    """Does class `name` of the module list a base named `base` (last part), directly or through
    its bases of the module? (`base` being a class of another module, matched by name.)"""
    info = facts.classes.get(name)
    if info is None or depth > 5:
        return False
    for written in info.bases:
        short = last_part(written)
        if short == base and base not in facts.classes:
            return True
        if short != name and _inherits_name(facts, short, base, depth + 1):
            return True
    return False


def _abstract(func: cst.FunctionDef) -> bool:
    """A method a subclass must provide: decorated `@abstractmethod`, or whose body (after an
    optional docstring) only raises `NotImplementedError`. (A `pass` body is a no-op method the
    base class may really run: not abstract.)"""
    for decorator in func.decorators:
        if last_part(dotted(decorator.decorator) or "") == "abstractmethod":
            return True
    body = func.body
    stmts = list(body.body) if isinstance(body, cst.IndentedBlock) else [body]
    smalls: List[cst.CSTNode] = []
    for stmt in stmts:
        if not isinstance(stmt, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            return False
        smalls.extend(stmt.body)
    if smalls and isinstance(smalls[0], cst.Expr) and isinstance(smalls[0].value, cst.BaseString):
        smalls = smalls[1:]
    if len(smalls) != 1 or not isinstance(smalls[0], cst.Raise) or smalls[0].exc is None:
        return False
    exc = smalls[0].exc
    exc = exc.func if isinstance(exc, cst.Call) else exc
    return last_part(dotted(exc) or "") == "NotImplementedError"


def _helper_local(text: str, scope: Scope) -> bool:
    """Is `text` (as written in a followed helper) rooted in a name bound inside that helper and
    not passed in by the caller? Such an object is the helper's own, made afresh at every call."""
    if not scope.chain or scope.func is None:
        return False
    head = text.split(".")[0]
    if head in ("self", "cls") or any(name == head for name, _ in scope.binding):
        return False
    return head in _locals_of(scope.facts, scope.func)


def _locals_of(facts: ModuleFacts, func: cst.FunctionDef) -> frozenset:
    """Names a def binds itself: parameters, assignment/loop/with/import targets, nested defs
    (minus `global`/`nonlocal` ones). Memoised per def."""
    cached = facts._locals.get(id(func))
    if cached is not None:
        return cached
    names = set(p.name.value for p in (*func.params.posonly_params, *func.params.params, *func.params.kwonly_params))
    for star in (func.params.star_arg, func.params.star_kwarg):
        if isinstance(star, cst.Param):
            names.add(star.name.value)
    shared: set = set()

    def heads(target: cst.CSTNode) -> None:
        for text in assigned_texts(target):
            if "." not in text:
                names.add(text)

    def walk(stmts) -> None:
        for stmt in stmts:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.Assign):
                        for target in small.targets:
                            heads(target.target)
                    elif isinstance(small, (cst.AugAssign, cst.AnnAssign)):
                        heads(small.target)
                    elif isinstance(small, (cst.Global, cst.Nonlocal)):
                        shared.update(n.name.value for n in small.names)
                    elif isinstance(small, (cst.Import, cst.ImportFrom)) and not isinstance(
                        small.names, cst.ImportStar
                    ):
                        for alias in small.names:
                            bound = alias.asname.name if alias.asname is not None else alias.name
                            text = dotted(bound) if isinstance(bound, cst.BaseExpression) else None
                            if text:
                                names.add(text.split(".")[0])
                continue
            if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
                names.add(stmt.name.value)
                continue
            if isinstance(stmt, cst.For):
                heads(stmt.target)
            elif isinstance(stmt, cst.With):
                for item in stmt.items:
                    if item.asname is not None:
                        heads(item.asname.name)
            walk(_statement_children(stmt))

    walk(func.body.body if isinstance(func.body, cst.IndentedBlock) else ())
    result = frozenset(names - shared)
    facts._locals[id(func)] = result
    return result


def _param_names(func: cst.FunctionDef, skip_self: bool) -> List[str]:
    params = [p.name.value for p in (*func.params.posonly_params, *func.params.params)]
    if skip_self and params:
        params = params[1:]
    return params


def _bind_args(params: List[str], call: cst.Call, scope: Scope) -> Tuple[Tuple[str, str], ...]:
    """Parameter name -> caller's text (in root terms), for arguments that are plain names."""
    binding: List[Tuple[str, str]] = []
    index = 0
    for arg in call.args:
        if arg.star:
            break
        text = dotted(arg.value)
        if arg.keyword is not None:
            name = arg.keyword.value
        elif index < len(params):
            name = params[index]
            index += 1
        else:
            continue
        if text is not None:
            bound, _ = scope.subst(text)
            binding.append((name, bound))
    return tuple(binding)
