"""Per-module facts for the training-loop analysis: definitions, classes, loops, and the kind of
every object bound from a recognisable call (`torch.optim.AdamW(...)`, `get_scheduler(...)`,
`deepspeed.initialize(...)`, `accelerator.prepare(...)`, `self.optimizers()`).

Computed once per parsed module (`module_facts`), from statements only. What one call does is
`gradlint.analysis.effects`; names without a construction are classified by
`gradlint.analysis.object_kinds`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.calls import _walk_calls
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.object_kinds import (
    _OTHER_FACTORIES,
    _SCALER_FACTORIES,
    _SCHEDULER_FACTORIES,
    ENGINE,
    KNOWN_LIBRARIES,
    KNOWN_OPTIMIZERS,
    OPTIMIZER,
    OTHER,
    SCALER,
    SCHEDULER,
    last_part,
    name_kind,
)

# ---------------------------------------------------------------------------------------------
# Per-module facts
# ---------------------------------------------------------------------------------------------

_SERIALS = itertools.count()


@dataclass
class ClassInfo:
    methods: Dict[str, cst.FunctionDef]
    bases: List[str]
    manual_optimization: bool = False  # Lightning: `self.automatic_optimization = False`


@dataclass
class ModuleFacts:
    """What one module defines and binds: computed once per parsed module."""

    module: cst.Module
    path: str
    imports: ImportMap
    kinds: Dict[str, str] = field(default_factory=dict)  # expression text -> kind, from assignments
    functions: Dict[str, cst.FunctionDef] = field(default_factory=dict)  # module-level defs
    # (id of the enclosing def or None, name) -> def: nested defs resolve where they are visible
    defs: Dict[Tuple[Optional[int], str], cst.FunctionDef] = field(default_factory=dict)
    parent: Dict[int, Optional[cst.FunctionDef]] = field(default_factory=dict)  # def id -> enclosing def
    classes: Dict[str, ClassInfo] = field(default_factory=dict)
    # (loop, name of its class, the def it is in)
    loops: List[Tuple[cst.CSTNode, Optional[str], Optional[cst.FunctionDef]]] = field(default_factory=list)
    sources: Dict[str, set] = field(default_factory=dict)  # module text -> optimizers built on it
    instances: Dict[str, str] = field(default_factory=dict)  # `trainer` -> `Trainer` for trainer = Trainer()
    star_import: bool = False
    _relevant: Dict[Tuple[int, Optional[str]], bool] = field(default_factory=dict)  # (body id, context)
    _locals: Dict[int, frozenset] = field(default_factory=dict)
    _steppy: Dict[Tuple[int, Optional[str]], bool] = field(default_factory=dict)  # (body id, context)
    _families: Dict[str, List[str]] = field(default_factory=dict)  # class -> it and its subclasses
    serial: int = field(default_factory=lambda: next(_SERIALS))  # unique per parse (ids get reused)
    _summary: Dict[int, Tuple[List[cst.Call], bool]] = field(default_factory=dict)
    loop_parent: Dict[int, Optional[cst.CSTNode]] = field(default_factory=dict)  # loop id -> enclosing loop

    def summary(self, body: cst.CSTNode) -> Tuple[List[cst.Call], bool]:
        """(calls in evaluation order, assigns a `.grad`?) of a body, collected once."""
        found = self._summary.get(id(body))
        if found is None:
            found = _walk_calls(body.body if isinstance(body, cst.FunctionDef) else body)
            self._summary[id(body)] = found
        return found

    def optimizers_within(self, modules: Iterable[str]) -> Set[str]:
        """The optimizers built (by `sources`) only on parameters of `modules` or of their
        submodules (`opt_head` on `head.parameters()`, or on `model.head.parameters()`, is within
        `{"body", "head"}` and within `{"model"}`): a clear of those modules' gradients clears
        theirs too."""
        texts = set(modules)
        if not texts:
            return set()
        held: Dict[str, Set[str]] = {}
        for module, owners in self.sources.items():
            for owner in owners:
                held.setdefault(owner, set()).add(module)
        return {
            owner
            for owner, built_on in held.items()
            if all(any(m == t or m.startswith(t + ".") for t in texts) for m in built_on)
        }

    def optimizer_sources(self, optimizer: str) -> Set[str]:
        """The module texts whose parameters `optimizer` was built on (empty when unknown)."""
        return {module for module, owners in self.sources.items() if optimizer in owners}

    def kind_of(self, text: str) -> Optional[str]:
        """The kind of the object `text` names: by how it was built, else by its name."""
        kind = self.kinds.get(text)
        if kind is not None:
            return kind
        return name_kind(text)


def module_facts(module: cst.Module, path: str, imports: Optional[ImportMap] = None) -> ModuleFacts:
    facts = ModuleFacts(module=module, path=path, imports=imports or ImportMap.of(module))
    _FactCollector(facts).walk(module.body, None, None, None)
    return facts


def _parameter_sources(call: cst.Call) -> List[str]:
    """`netG` in `Adam(netG.parameters(), ...)`: the modules whose parameters an optimizer holds."""
    found: List[str] = []

    class _V(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            func = node.func
            if isinstance(func, cst.Attribute) and func.attr.value in ("parameters", "named_parameters"):
                text = dotted(func.value)
                if text is not None:
                    found.append(text)

    for arg in call.args:
        arg.value.visit(_V())
    return found


def _target_texts(target: cst.BaseExpression) -> List[Optional[str]]:
    """Texts bound by an assignment target, one per element of a tuple/list target."""
    if isinstance(target, (cst.Tuple, cst.List)):
        return [dotted(el.value) if not isinstance(el, cst.StarredElement) else None for el in target.elements]
    return [dotted(target)]


def _statement_children(stmt: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The statements directly nested in a compound statement (bodies, else, handlers, finally)."""
    for name in ("body", "orelse", "finalbody"):
        part = getattr(stmt, name, None)
        if part is None:
            continue
        if isinstance(part, cst.If):  # elif
            yield part
            continue
        inner = getattr(part, "body", part)
        if isinstance(inner, (list, tuple)):
            yield from inner
        elif isinstance(inner, cst.BaseSuite):
            yield from _statement_children(inner) if not isinstance(inner, cst.IndentedBlock) else inner.body
    for handler in getattr(stmt, "handlers", ()) or ():
        yield from handler.body.body if isinstance(handler.body, cst.IndentedBlock) else ()
    for case in getattr(stmt, "cases", ()) or ():
        yield from case.body.body if isinstance(case.body, cst.IndentedBlock) else ()


class _FactCollector:
    """Collects definitions, loops, and the kind of every object bound from a recognisable call.

    It walks statements only (never into expressions), which keeps it a small fraction of the
    parse time: LibCST visitors over every expression node cost more than parsing.
    """

    def __init__(self, facts: ModuleFacts) -> None:
        self.facts = facts
        self.loop_stack: List[cst.CSTNode] = []

    def walk(self, stmts, cls: Optional[ClassInfo], cls_name: Optional[str], func: Optional[cst.FunctionDef]) -> None:
        for stmt in stmts:
            self.statement(stmt, cls, cls_name, func)

    def statement(
        self, stmt: cst.CSTNode, cls: Optional[ClassInfo], cls_name: Optional[str], func: Optional[cst.FunctionDef]
    ) -> None:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                self.small(small)
                if cls is not None and _turns_off_automatic_optimization(small, func is None):
                    cls.manual_optimization = True
            return
        if isinstance(stmt, cst.BaseSmallStatement):  # from a one-line suite: `if x: opt = SGD(...)`
            self.small(stmt)
            return
        if isinstance(stmt, cst.ClassDef):
            info = ClassInfo(methods={}, bases=[dotted(b.value) or "" for b in stmt.bases])
            self.facts.classes.setdefault(stmt.name.value, info)
            saved, self.loop_stack = self.loop_stack, []
            self.walk(_statement_children(stmt), info, stmt.name.value, None)
            self.loop_stack = saved
            return
        if isinstance(stmt, cst.FunctionDef):
            name = stmt.name.value
            if cls is not None and func is None:
                cls.methods.setdefault(name, stmt)
            else:
                if func is None:
                    self.facts.functions.setdefault(name, stmt)
                self.facts.defs.setdefault((id(func) if func is not None else None, name), stmt)
            self.facts.parent[id(stmt)] = func
            self._param_kinds(stmt)
            saved, self.loop_stack = self.loop_stack, []  # a def's loops are not its caller's
            self.walk(_statement_children(stmt), cls, cls_name, stmt)
            self.loop_stack = saved
            return
        if isinstance(stmt, (cst.For, cst.While)):
            self.facts.loops.append((stmt, cls_name, func))
            self.facts.loop_parent[id(stmt)] = self.loop_stack[-1] if self.loop_stack else None
            self.loop_stack.append(stmt)
            self.walk(_statement_children(stmt), cls, cls_name, func)
            self.loop_stack.pop()
            return
        elif isinstance(stmt, cst.With):
            for item in stmt.items:
                if item.asname is not None:
                    self._bind(_target_texts(item.asname.name), item.item)
        self.walk(_statement_children(stmt), cls, cls_name, func)

    def small(self, small: cst.BaseSmallStatement) -> None:
        if isinstance(small, cst.Assign):
            for target in small.targets:
                self._bind(_target_texts(target.target), small.value)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                self._bind(_target_texts(small.target), small.value)
        elif isinstance(small, cst.ImportFrom) and isinstance(small.names, cst.ImportStar):
            self.facts.star_import = True

    def _param_kinds(self, node: cst.FunctionDef) -> None:
        """`optimizer: torch.optim.Optimizer` parameters are optimizers whatever their name."""
        params = node.params
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            if param.annotation is None:
                continue
            text = self.facts.imports.resolve(param.annotation.annotation) or ""
            if last_part(text) in ("Optimizer", *KNOWN_OPTIMIZERS):
                self.facts.kinds.setdefault(param.name.value, OPTIMIZER)
            elif "LRScheduler" in text:
                self.facts.kinds.setdefault(param.name.value, SCHEDULER)

    def _bind(self, targets: List[Optional[str]], value: cst.BaseExpression) -> None:
        kinds = self._value_kinds(value, len(targets))
        if len(targets) == 1 and targets[0] is not None and isinstance(value, cst.Call):
            if isinstance(value.func, cst.Name):
                self.facts.instances.setdefault(targets[0], value.func.value)
        if len(targets) == 1 and targets[0] is not None and kinds[0] == OPTIMIZER and isinstance(value, cst.Call):
            for module_text in _parameter_sources(value):
                self.facts.sources.setdefault(module_text, set()).add(targets[0])
        for text, kind in zip(targets, kinds):
            if text is None or kind is None:
                continue
            previous = self.facts.kinds.get(text)
            if previous is not None and previous != kind:
                kind = OTHER  # bound to different things: not identifiable, stay silent
            self.facts.kinds[text] = kind

    def _value_kinds(self, value: cst.BaseExpression, count: int) -> List[Optional[str]]:
        """The kind of each of `count` targets bound from `value`."""
        if isinstance(value, (cst.Tuple, cst.List)) and count > 1 and len(value.elements) == count:
            return [self._single_kind(el.value) for el in value.elements]
        if isinstance(value, cst.Call):
            name = self.facts.imports.resolve(value.func) or ""
            method = last_part(name)
            if name.endswith("deepspeed.initialize"):
                # model_engine, optimizer, loader, scheduler = deepspeed.initialize(...):
                # the engine steps and clears; the rest are driven by it.
                kinds: List[Optional[str]] = [ENGINE]
                return kinds + [OTHER] * (count - 1)
            if method == "prepare" and count > 1:
                # accelerator.prepare(model, optimizer, ...) keeps each argument's kind.
                return [self._single_kind(arg.value) for arg in value.args][:count] + [None] * (count - len(value.args))
            if method == "optimizers" and isinstance(value.func, cst.Attribute):
                return [OPTIMIZER] * count  # LightningModule.optimizers()
        return [self._single_kind(value)] * count if count == 1 else [None] * count

    def _single_kind(self, value: cst.BaseExpression) -> Optional[str]:
        if isinstance(value, cst.Call):
            name = self.facts.imports.resolve(value.func) or ""
            method = last_part(name)
            if name.startswith("torch.optim.lr_scheduler") or _SCHEDULER_FACTORIES.search(name):
                return SCHEDULER
            if name.startswith("torch.optim.swa_utils"):
                return OTHER
            if method in KNOWN_OPTIMIZERS or (name.startswith("torch.optim.") and method[:1].isupper()):
                return OPTIMIZER
            if method.endswith("Optimizer") and method[:1].isupper():
                return OPTIMIZER  # hvd.DistributedOptimizer(...), ZeroRedundancyOptimizer(...)
            if _SCALER_FACTORIES.search(name):
                return SCALER
            if _OTHER_FACTORIES.search(name) or name.startswith(("gym.", "gymnasium.")):
                return OTHER
            if method == "optimizers" and isinstance(value.func, cst.Attribute):
                return OPTIMIZER
            if method == "prepare" and len(value.args) == 1:
                return self._single_kind(value.args[0].value)
            if method[:1].isupper() and _from_project(self.facts.imports, value.func):
                # `ScheduledOptim(...)` imported from the project: a wrapper whose step() may clear
                return OTHER
            return None
        text = dotted(value)
        if text is not None:
            return self.facts.kinds.get(text)
        if isinstance(value, cst.Subscript):
            # opts = self.optimizers(); opt_g = opts[0]
            base = dotted(value.value)
            if base is not None and self.facts.kinds.get(base) == OPTIMIZER:
                return OPTIMIZER
        return None



def _turns_off_automatic_optimization(small: cst.BaseSmallStatement, class_level: bool) -> bool:
    """`self.automatic_optimization = False` in a method, or `automatic_optimization = False` in the
    class body: Lightning then calls `training_step` once per batch and the code steps itself."""
    if isinstance(small, cst.Assign):
        targets = [t.target for t in small.targets]
        value = small.value
    elif isinstance(small, cst.AnnAssign) and small.value is not None:
        targets, value = [small.target], small.value
    else:
        return False
    if not (isinstance(value, cst.Name) and value.value == "False"):
        return False
    wanted = "automatic_optimization" if class_level else "self.automatic_optimization"
    return any(dotted(t) == wanted for t in targets)


def implicit_loops(facts: ModuleFacts) -> Iterator[Tuple[cst.FunctionDef, Optional[str]]]:
    """Functions a framework calls once per batch, so that their body is a loop body (the loop is
    the framework's): Lightning `training_step` methods of classes with manual optimization, and
    in a module that imports PyTorch-Ignite, its process functions `def update(engine, batch)`
    (functions and static methods whose two parameters are the engine and the batch)."""
    for name, info in facts.classes.items():
        step = info.methods.get("training_step")
        if step is not None and info.manual_optimization:
            yield step, name
    if not any(target.split(".")[0] == "ignite" for target in facts.imports.aliases.values()):
        return
    for name, info in facts.classes.items():
        for method in info.methods.values():
            if _ignite_process_function(method):
                yield method, name
    for function in facts.defs.values():  # module-level and nested (`def create_trainer(): def step(...)`)
        if _ignite_process_function(function):
            yield function, None


def _ignite_process_function(func: cst.FunctionDef) -> bool:
    """`def update(engine, batch)`: the engine first, then the batch (a helper such as
    `backward_pass(engine, loss)`, called from the process function, is not one)."""
    params = [p.name.value for p in (*func.params.posonly_params, *func.params.params)]
    if len(params) != 2 or params[0] not in ("engine", "_engine", "trainer"):
        return False
    return "batch" in params[1].lower() or params[1] in ("data", "sample", "samples", "inputs")


def _from_project(imports: ImportMap, func: cst.BaseExpression) -> bool:
    """Is `func` imported from a module that is not a known library (the project's own)?"""
    text = dotted(func)
    if text is None or text.split(".")[0] not in imports.aliases:
        return False
    qualname = _qualify(imports, text)
    return qualname.startswith(".") or qualname.split(".")[0] not in KNOWN_LIBRARIES


def _optimizer_class(facts: ModuleFacts, cls: str, depth: int = 0) -> bool:
    """Does the class (of this module) derive from an optimizer (`torch.optim.Optimizer`, Adam...)?"""
    info = facts.classes.get(cls)
    if info is None or depth > 5:
        return False
    for base in info.bases:
        name = last_part(base)
        if name.endswith("Optimizer") or name in KNOWN_OPTIMIZERS or _optimizer_class(facts, name, depth + 1):
            return True
    return False


def _visible_def(facts: ModuleFacts, where: Optional[cst.FunctionDef], name: str) -> Optional[cst.FunctionDef]:
    """The def `name` means inside `where`: its own nested defs, then enclosing ones, then module."""
    current = where
    for _ in range(50):
        found = facts.defs.get((id(current) if current is not None else None, name))
        if found is not None or current is None:
            return found
        current = facts.parent.get(id(current))
    return None


def _qualify(imports: ImportMap, text: str) -> str:
    head, dot, rest = text.partition(".")
    target = imports.aliases.get(head, head)
    return target + dot + rest if dot else target


def iter_loops(facts: ModuleFacts) -> Iterator[Tuple[cst.CSTNode, Optional[str], Optional[cst.FunctionDef]]]:
    """Every for/while loop of the module, outer before inner, with its class's name and its def."""
    return iter(facts.loops)
