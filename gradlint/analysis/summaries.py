"""What the project's own functions, methods and module classes return, summarised once per
argument pattern and used at every call site.

A call `pair_loss(a, b)`, `self._similarity_loss(za, zb)`, `rank_loss(x, y)` (an instance of a
project `nn.Module`, its `forward`), `net(x)` (a class imported from `model.py` next to the script)
is evaluated by walking the callee's body with its parameters bound to the arguments' values; the
merge of its `return` values is the call's value. A function nested in the one being read
(`def pad_to_length(t, n, v): ...` in a method) is summarised where it is called, with the
caller's values of the names it reads from around it. Summaries are memoised per (function, argument
values), bounded in depth and in number per file, and recursion gives up (unknown). Classes know
their `self.<attr>` values (modules, criteria) from their methods, including project base classes.
A project class deriving from `DataParallel` gathers like it; a helper that hands back the module it
is given wrapped in `DataParallel` is read even when its module would otherwise not be (it spells
`DataParallel`), and also while classes' attributes are computed (`wrap_summary`). Project modules are located through
`analysis.project.Project` and parsed once per modification (`analysis.projectmodules`).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.bindings import assigned_keys, forget
from gradlint.analysis.evaluate import BUILTINS, CallArgs, Evaluator, split_args
from gradlint.analysis.libraries import add_annotated
from gradlint.analysis.names import dotted
from gradlint.analysis.projectmodules import ModuleInfo, ModuleLoader
from gradlint.analysis.reads import param_names
from gradlint.analysis.shapes import (
    DATA,
    UNKNOWN,
    Helper,
    Instance,
    LossFn,
    Seq,
    Shape,
    Struct,
    Value,
    gather,
    merge,
    per_gpu,
)
from gradlint.analysis.shapeflow import Walker
from gradlint.analysis.tree import walk

MAX_DEPTH = 4  # nested summaries (a helper of a method of a forward...)
MAX_SUMMARIES = 250  # function bodies walked for summaries while analysing one file
MAX_BASES = 3  # project base classes followed for methods and attributes

ClassRef = Tuple[ModuleInfo, cst.ClassDef]


class Summaries:
    """Summaries for the analysis of one file (and the project modules it reaches)."""

    def __init__(self, loader: ModuleLoader) -> None:
        self.loader = loader
        self.memo: Dict[tuple, Optional[Value]] = {}
        self.active: set = set()
        self.depth = 0
        self.walked = 0
        self.class_envs: Dict[Tuple[str, str], Dict[str, Value]] = {}
        self.globals: Dict[str, Dict[str, Value]] = {}
        # Values the callers elsewhere pass to an `__init__` of the analysed file (set by the
        # analysis of that file: `analysis.param_sites`); none by default.
        self.init_params: Optional[Callable[[cst.ClassDef, cst.FunctionDef], Dict[str, Value]]] = None

    def evaluator(self, info: ModuleInfo, cls: Optional[ClassRef] = None, light: bool = False) -> "ProjectEvaluator":
        return ProjectEvaluator(self, info, cls, light)

    # -- module and class environments (computed without summaries: no recursion) --------
    def module_globals(self, info: ModuleInfo) -> Dict[str, Value]:
        """Values of the module's names bound once, by a plain assignment at the top level
        (`criterion = nn.MSELoss(reduction="none")`, `net = Net()`): what a summarised body may read.
        Only those statements are evaluated, so a big `if __name__ == "__main__":` costs nothing."""
        found = self.globals.get(info.path)
        if found is None:
            self.globals[info.path] = {}  # while computing
            evaluator = self.evaluator(info, light=True)
            found = {}
            for stmt in info.module.body:
                if not isinstance(stmt, cst.SimpleStatementLine):
                    continue
                for small in stmt.body:
                    if isinstance(small, cst.Assign) and len(small.targets) == 1:
                        target = small.targets[0].target
                        if isinstance(target, cst.Name) and info.counts.get(target.value) == 1:
                            found[target.value] = evaluator.value(small.value, found)
            self.globals[info.path] = found
        return found

    def class_env(self, ref: ClassRef, depth: int = 0) -> Dict[str, Value]:
        """`self.<attr>` values every method agrees on (assigned once), base classes first."""
        info, cls = ref
        key = (info.path, cls.name.value)
        found = self.class_envs.get(key)
        if found is not None:
            return found
        self.class_envs[key] = {}
        env: Dict[str, Value] = {}
        if depth < MAX_BASES:
            for base in self.bases(ref):
                env.update(self.class_env(base, depth + 1))
        seen: Dict[str, List[Value]] = {}
        globals_env = self.module_globals(info)
        for method in info.methods(cls):
            walker = Walker(self.evaluator(info, ref, light=True), info.imports, {})
            start = forget(globals_env, param_names(method))
            if method.name.value == "__init__" and info is self.loader.main and self.init_params is not None:
                start.update(self.init_params(cls, method))  # `Trainer(model=wrapped)` elsewhere
            end = walker.block(method.body, start)
            assigned: Dict[str, List[Value]] = {}
            for attr, value in walker.self_assignments:
                assigned.setdefault(attr, []).append(value)
            for attr, values in assigned.items():
                # Assigned once: that value (also in a branch). Several times in one method
                # (`self.model = Net()`, then `if n_gpu > 1: self.model = nn.DataParallel(self.model)`):
                # its value where the method ends.
                seen.setdefault(attr, []).append(values[0] if len(values) == 1 else end.get(attr, UNKNOWN))
        for attr, values in seen.items():
            if len(values) == 1:
                env[attr] = values[0]
            else:
                # Assigned in several methods (`self.model = model` in `__init__`, then wrapped by a
                # helper in `_setup`): a DataParallel wrap survives, as it does a conditional wrap.
                merged = values[0]
                for other in values[1:]:
                    merged = merge(merged, other)
                if holds_wrap(merged):
                    env[attr] = merged
        self.class_envs[key] = env
        return env

    # -- resolving names to the project's definitions ------------------------------------
    def definition(self, info: ModuleInfo, expr: cst.BaseExpression, load: bool = True):
        """("function", info, def) or ("class", info, classdef) for a name the module defines or
        imports from the project; None otherwise. With `load` false an imported name is not looked
        up (that may parse another module): ("imported", info, its text) instead."""
        text = dotted(expr)
        return self.named(info, text, load) if text is not None else None

    def named(self, info: ModuleInfo, text: str, load: bool = True):
        """`definition` for a name or dotted name as spelt in `info`."""
        if "." not in text and info.counts.get(text) == 1:
            if text in info.functions:
                return "function", info, info.functions[text]
            if text in info.classes:
                return "class", info, info.classes[text]
        head, _, rest = text.partition(".")
        target = info.imports.aliases.get(head)
        if target is None:
            # A bare name the module never binds may come from its star imports. Only class
            # names (capitalised) are looked for: a lower-case name is as likely a parameter or
            # local variable of the function being read, which no import can bind.
            if not head[:1].isupper() or not _star_candidate(info, head):
                return None
            if not load:
                return "imported", info, text
            return self._starred(info, text, 0)
        if not load:
            return "imported", info, text
        return self._imported(info, f"{target}.{rest}" if rest else target)

    def _imported(self, info: ModuleInfo, qualified: Optional[str], depth: int = 0):
        if qualified is None or depth > 3:
            return None
        target, attr = self.loader.locate(info, qualified)
        if target is None:
            return None
        if attr in target.functions and target.counts.get(attr) == 1:
            return "function", target, target.functions[attr]
        if attr in target.classes and target.counts.get(attr) == 1:
            return "class", target, target.classes[attr]
        alias = target.imports.aliases.get(attr)
        if alias:
            return self._imported(target, alias, depth + 1)
        return self._starred(target, attr, depth + 1) if _star_candidate(target, attr) else None

    def _starred(self, info: ModuleInfo, name: str, depth: int):
        """`name` (a bare name, maybe dotted) as brought into `info` by its `from M import *`
        statements of project modules (`from .base_trainer import *` in a package `__init__`):
        the last of those modules, in import order, that defines it (a later star import
        rebinds the name)."""
        for module in reversed(info.imports.stars):
            found = self._imported(info, f"{module}.{name}", depth)
            if found is not None:
                return found
        return None

    def class_ref(self, ref: Tuple[str, str]) -> Optional[ClassRef]:
        """The class an instance was made from: (module path, name as spelt there)."""
        info = self.loader.by_path.get(ref[0])
        found = self.named(info, ref[1]) if info is not None else None
        return (found[1], found[2]) if found is not None and found[0] == "class" else None

    def bases(self, ref: ClassRef) -> List[ClassRef]:
        info, cls = ref
        out = []
        for base in cls.bases:
            found = self.definition(info, base.value)
            if found is not None and found[0] == "class":
                out.append((found[1], found[2]))
        return out

    def gathers(self, ref: ClassRef, depth: int = 0) -> bool:
        """Is the class DataParallel or a subclass of it (not DistributedDataParallel)?"""
        info, cls = ref
        for base in cls.bases:
            qualified = info.imports.resolve(base.value) or ""
            last = qualified.rsplit(".", 1)[-1]
            if last.endswith("DataParallel") and "Distributed" not in last and "Sharded" not in last:
                return True
        return depth < MAX_BASES and any(self.gathers(b, depth + 1) for b in self.bases(ref))

    def method(self, ref: ClassRef, name: str, depth: int = 0):
        """(defining module, def) of a method of the class or its project bases."""
        info, cls = ref
        for method in info.methods(cls):
            if method.name.value == name:
                return info, method
        if depth < MAX_BASES:
            for base in self.bases(ref):
                found = self.method(base, name, depth + 1)
                if found is not None:
                    return found
        return None

    # -- summaries -------------------------------------------------------------------------
    def wrap_summary(self, info: ModuleInfo, fn: cst.FunctionDef) -> Optional[Value]:
        """What a function returns when that holds a DataParallel wrap of a module it builds or is
        given (`if len(ids) > 1: model = nn.DataParallel(model)` ... `return model`), computed
        without summaries of the calls it makes (so it is cheap, and safe while classes' attributes
        are being computed); None otherwise."""
        key = ("wrap", info.path, id(fn))
        if key in self.memo:
            return self.memo[key]
        if key in self.active or self.walked >= MAX_SUMMARIES:
            return None
        self.active.add(key)
        self.walked += 1
        try:
            env = forget(self.module_globals(info), param_names(fn) + sorted(assigned_keys(fn.body)))
            walker = Walker(self.evaluator(info, light=True), info.imports, {})
            walker.block(fn.body, env)
            result = _merge_returns(walker.returns)
        finally:
            self.active.discard(key)
        found = result if holds_wrap(result) else None
        self.memo[key] = found
        return found

    def summary(
        self, info: ModuleInfo, fn: cst.FunctionDef, cls: Optional[ClassRef], bound: Dict[str, Value],
        nested: bool = False,
    ):
        """The merged value of `fn`'s returns with its parameters bound; None: no summary. A
        `nested` function (defined in another) sees only `bound`: its arguments and what the
        names it reads from around it hold where it is called, module globals included."""
        key = (info.path, id(fn), (cls[0].path, cls[1].name.value) if cls else None, tuple(sorted(bound.items())))
        if key in self.memo:
            return self.memo[key]
        if key in self.active or self.depth >= MAX_DEPTH or self.walked >= MAX_SUMMARIES:
            return None
        self.active.add(key)
        self.depth += 1
        self.walked += 1
        try:
            params = param_names(fn)
            env = {} if nested else forget(self.module_globals(info), params + sorted(assigned_keys(fn.body)))
            if cls is not None and params[:1] == ["self"]:
                env.update(self.class_env(cls))
            env.update(bound)
            add_annotated(env, fn, info.imports)
            walker = Walker(self.evaluator(info, cls), info.imports, {})
            walker.flags = True
            walker.helpers = True
            walker.block(fn.body, env)
            result = _merge_returns(walker.returns)
        finally:
            self.depth -= 1
            self.active.discard(key)
        self.memo[key] = result
        return result


def _star_candidate(info: ModuleInfo, name: str) -> bool:
    """Can the bare `name` come from a star import of `info`? Only when it has some, and the
    module neither binds the name itself nor means a builtin."""
    head = name.split(".")[0]
    return bool(info.imports.stars) and head not in info.counts and head not in BUILTINS


def holds_wrap(value: Optional[Value]) -> bool:
    """A DataParallel-wrapped module or criterion, alone or in a tuple (`return model, device`)."""
    if isinstance(value, (Instance, LossFn)):
        return value.gathered
    return isinstance(value, Seq) and any(holds_wrap(item) for item in value.items)


def _merge_returns(returns: List[Optional[Value]]) -> Optional[Value]:
    if not returns or any(r is None for r in returns):
        return None
    value = returns[0]
    for other in returns[1:]:
        value = merge(value, other)
    return value


def bind_arguments(fn: cst.FunctionDef, args: CallArgs, values, skip_self: bool) -> Dict[str, Value]:
    """Parameter name -> value of the argument passed for it (`values` evaluates expressions).
    `f(*batch)` with a batch from a loader passes a part of the batch to every positional parameter."""
    positional = [p.name.value for p in list(fn.params.posonly_params) + list(fn.params.params)]
    if skip_self and positional[:1] in (["self"], ["cls"]):
        positional = positional[1:]
    named = set(positional) | {p.name.value for p in fn.params.kwonly_params}
    bound: Dict[str, Value] = {}
    for name, expr in zip(positional, args.positional):
        bound[name] = values(expr)
    for name, expr in args.keywords.items():
        if name in named:
            bound[name] = values(expr)
    if args.star_values and all(values(e) == DATA for e in args.star_values):
        for name in positional[len(args.positional) :]:
            bound.setdefault(name, DATA)
    return bound


def _matters(value: Value) -> bool:
    """Can a call's result depend on this argument in a way the rule reports?"""
    if isinstance(value, Shape):
        return value.kind not in ("unknown", "scalar", "loader", "samples")
    return isinstance(value, (LossFn, Struct))


class ProjectEvaluator(Evaluator):
    """The evaluator with the project's functions, classes and methods known. Light: only
    instantiation (no summaries), used for module globals and class attributes."""

    def __init__(self, summaries: Summaries, info: ModuleInfo, cls: Optional[ClassRef], light: bool) -> None:
        super().__init__(info.module, info.imports)
        self.summaries = summaries
        self.info = info
        self.cls = cls
        self.light = light

    def project_call(self, call: cst.Call, args: CallArgs, env) -> Optional[Value]:
        func = call.func
        if isinstance(func, cst.Name) and func.value in env:
            return None  # a local value (a criterion, a module...) shadows any definition
        if self.cls is not None:
            if isinstance(func, cst.Name) and func.value == "self":
                return self.instance_call(Instance(self._ref(self.cls)), call, args, env)
            if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
                if dotted(func) in env:
                    return None
                found = self.summaries.method(self.cls, func.attr.value)
                if found is None or self.light:
                    return None
                info, fn = found
                return self._summary(info, fn, self.cls, call, args, env)
        found = self.summaries.definition(self.info, func, load=False)
        if found is None:
            return None
        if found[0] == "imported":
            found = self._imported(found[2], call, args, env)
            if found is None or isinstance(found, Instance):
                return found
        kind, info, node = found
        if kind == "class":
            ref = (info, node)
            if self.summaries.gathers(ref):
                inner = self.value(args.positional[0], env) if args.positional else UNKNOWN
                if isinstance(inner, Instance):
                    return Instance(inner.cls, True, inner.library)
                return Instance(None, True, node.name.value)
            if args.keywords and not args.positional and not args.starred and not self._callable(ref):
                # a dataclass or named tuple of outputs: `Output(loss=loss, logits=logits)`
                return Struct(tuple((k, self.value(v, env)) for k, v in args.keywords.items()))
            return Instance(self._ref(ref))
        if self.light:  # no summaries here, but a helper that wraps the module it is given matters
            return self.summaries.wrap_summary(info, node)
        return self._summary(info, node, None, call, args, env)

    def instance_call(self, inst: Instance, call: cst.Call, args: CallArgs, env) -> Optional[Value]:
        if not inst.gathered and inst.cls is not None and not self.light:
            # an instance of a project subclass of DataParallel made where its module was not
            # known (`BalancedParallel(build_model(cfg))`): it gathers what that module returns
            ref = self.summaries.class_ref(inst.cls)
            if ref is not None and self.summaries.gathers(ref):
                return per_gpu(self.code(call.func))
        result = self._forward(inst, call, args, env)
        if inst.gathered:
            # whatever the forward returns, DataParallel concatenates it across the replicas
            return gather(result, self.code(call.func))
        return result

    def _forward(self, inst: Instance, call: cst.Call, args: CallArgs, env) -> Optional[Value]:
        if self.light or inst.cls is None:
            return None
        ref = self.summaries.class_ref(inst.cls)
        if ref is None:
            return None
        found = self.summaries.method(ref, "forward") or self.summaries.method(ref, "__call__")
        if found is None:
            return None
        info, fn = found
        return self._summary(info, fn, ref, call, args, env)

    def helper_call(self, helper: Helper, call: cst.Call, args: CallArgs, env) -> Optional[Value]:
        """A function defined in the function being read, called there: summarised with its
        arguments and the caller's values of the names it reads but does not bind itself."""
        if self.light:
            return None
        fn = helper.fn
        own = set(param_names(fn)) | assigned_keys(fn.body)
        reads = {node.value for node in walk(fn.body) if isinstance(node, cst.Name)} - own
        bound = {k: v for k, v in env.items() if k.split(".")[0] in reads}
        bound.update(bind_arguments(fn, args, lambda e: self.value(e, env), skip_self=False))
        return self.summaries.summary(self.info, fn, None, bound, nested=True)

    def _imported(self, text: str, call: cst.Call, args: CallArgs, env):
        """An imported project name is looked up (its module parsed) only when the call can matter:
        an argument is a batch, a model output, a known non-scalar, a criterion or a module to
        wrap. Otherwise a class gives an instance resolved when it is called; a function, nothing."""
        exprs = args.positional + list(args.keywords.values()) + args.star_values
        values = [self.value(e, env) for e in exprs]
        is_class = text.rsplit(".", 1)[-1][:1].isupper()
        # a module to wrap, or a class named like a parallel wrapper (`BalancedParallel(model)`:
        # whether it gathers is read from its bases, and the wrap must survive an `if`)
        wraps = is_class and bool(args.positional) and (isinstance(values[0], Instance) or "Parallel" in text)
        if wraps or any(_matters(v) for v in values) or self._may_wrap(text):
            return self.summaries.named(self.info, text)
        return Instance((self.info.path, text)) if is_class else None

    def _may_wrap(self, text: str) -> bool:
        """Is an imported function one that may hand back a DataParallel wrap (its module spells
        `DataParallel`: `model, device = model_device(n_gpu, model)`)? Others are not read."""
        if text.rsplit(".", 1)[-1][:1].isupper():
            return False
        head, _, rest = text.partition(".")
        target = self.info.imports.aliases.get(head)
        qualified = f"{target}.{rest}" if target and rest else target
        return qualified is not None and self.summaries.loader.mentions(self.info, qualified, "DataParallel")

    def iterated(self, call: cst.Call, env) -> Optional[Value]:
        """What a project function called as a loop's iterable returns (`for b in make_batches(cfg)`
        with `make_batches` imported from the project), looked up even when no argument matters:
        the DataLoader it builds makes the loop's items batches. None: not known."""
        if self.light or (isinstance(call.func, cst.Name) and call.func.value in env):
            return None
        found = self.summaries.definition(self.info, call.func)
        if found is None or found[0] != "function":
            return None
        _, info, fn = found
        return self._summary(info, fn, None, call, split_args(call), env)

    def _callable(self, ref: ClassRef) -> bool:
        return any(self.summaries.method(ref, name) is not None for name in ("forward", "__call__", "__init__"))

    def _summary(self, info, fn, cls, call, args, env) -> Optional[Value]:
        bound = bind_arguments(fn, args, lambda e: self.value(e, env), skip_self=cls is not None)
        return self.summaries.summary(info, fn, cls, bound)

    @staticmethod
    def _ref(ref: ClassRef) -> Tuple[str, str]:
        return ref[0].path, ref[1].name.value
