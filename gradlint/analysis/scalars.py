"""Is the tensor a backward call starts from a scalar? (The fact GL003 reads.)

`loss.backward()` with no `gradient=` only works when `loss` has one element. This module walks
every scope of a file and infers, without running anything, the shape of the root of each backward
call (see `analysis.shapes` for the kinds):

- **scalar**: `.sum()`/`.mean()`/`.norm()`/`.max()` without `dim`, losses with their default
  reduction, arithmetic of scalars (`.sum() * 0.5`), factories of one element;
- **non-scalar**: `reduction='none'` losses, `dim=` reductions of tensors of known rank >= 2,
  factories of more than one element, `torch.stack` of several tensors, and elementwise results of
  any non-scalar (`a * b.mean()` is still a vector: `.mean()` binds tighter than `*`);
- **batched**: one value per sample of a loader's batch (`(targets - q).pow(2)` for `q` a model's
  output on the batch, `worse - better`, `out.sum(-1)`, `q.gather(1, a)`), also when the value is
  computed in a helper, a method, a custom loss module's `forward` or another project module;
- **gathered**: what a module wrapped in `nn.DataParallel` returns (its 0-dim loss, or any tensor,
  alone or in a tuple, dict or record): the replicas' results are concatenated, at least one value
  per GPU. The wrap may happen in another method of a trainer class, under a GPU-count test, of a
  model built elsewhere, or of a criterion, in a helper (of another module too) that hands the
  model back wrapped, or in the callers elsewhere of a function or trainer class of this file
  (`analysis.param_sites`); `.mean()`/`.sum()` after the gather make a scalar;
- **unknown**: everything else (a bare `model(x)`, parameters, names reassigned in a branch).
  Unknown means the rule stays silent.

The statement walk is `analysis.shapeflow`, the expression rules `analysis.evaluate`, and the
return summaries of functions and classes `analysis.summaries`.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple, Union

import libcst as cst

from gradlint.analysis.backward import BackwardCall, backward_call, unknown_arguments
from gradlint.analysis.bindings import _ASSIGNED, assigned_keys, definitions, forget
from gradlint.analysis.evaluate import Evaluator, split_args
from gradlint.analysis.libraries import add_annotated
from gradlint.analysis.method_sites import called_method
from gradlint.analysis.names import ImportMap
from gradlint.analysis.param_sites import WrappedParams
from gradlint.analysis.projectmodules import ModuleInfo, ModuleLoader
from gradlint.analysis.reads import param_names
from gradlint.analysis.shapeflow import BackwardShape, Walker
from gradlint.analysis.shapes import DATA, UNKNOWN, LossFn, Shape, Struct, Value
from gradlint.analysis.summaries import ClassRef, Summaries, bind_arguments
from gradlint.analysis.tree import preorder, typed, walk

__all__ = [
    "BackwardShape",
    "LossFn",
    "Shape",
    "Value",
    "assigned_keys",
    "backward_shapes",
    "nonscalar_roots",
    "_ASSIGNED",
]

_STEP_HOOKS = frozenset({"training_step", "validation_step", "test_step"})


class _CallSites:
    """What the module's own functions and methods are called with (`train(model, criterion)` where
    `criterion = nn.MSELoss(reduction='none')`, `learn(*batch)` or `self.do_batch(x, y)` for a
    loader's batch), so a parameter can carry a known value into the function when every call that
    the file makes agrees on it."""

    def __init__(self, functions: Dict[str, cst.FunctionDef], info: ModuleInfo, summaries: Summaries) -> None:
        self.functions = functions
        self.info = info
        self.summaries = summaries
        # id of the def -> (def, its class or None, what each call passes; None: cannot tell)
        self.seen: Dict[int, Tuple[cst.FunctionDef, Optional[ClassRef], List[Optional[Dict[str, Value]]]]] = {}

    def note(self, call: cst.Call, env: Dict[str, Value], evaluator: Evaluator) -> None:
        func = call.func
        cls: Optional[ClassRef] = None
        if isinstance(func, cst.Name) and func.value in self.functions:
            fn = self.functions[func.value]
        elif (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value == "self"
            and getattr(evaluator, "cls", None) is not None
            and evaluator.cls[0] is self.info  # type: ignore[attr-defined]
        ):
            cls = evaluator.cls  # type: ignore[attr-defined]
            found = self.summaries.method(cls, func.attr.value)  # type: ignore[arg-type]
            if found is None or found[0] is not self.info or param_names(found[1])[:1] != ["self"]:
                return
            fn = found[1]
        elif isinstance(func, cst.Attribute) and not (isinstance(func.value, cst.Name) and func.value.value == "self"):
            method = called_method(func, env, evaluator, self.info, self.summaries)  # `agent.learn(*batch)`
            if method is None:
                return
            cls, fn = method
        else:
            return
        args = split_args(call)
        bound = bind_arguments(fn, args, lambda e: evaluator.value(e, env), skip_self=cls is not None)
        entry = self.seen.setdefault(id(fn), (fn, cls, []))
        entry[2].append(None if args.starred and not bound else bound)

    def agreed(self) -> List[Tuple[cst.FunctionDef, Optional[ClassRef], Dict[str, Value]]]:
        """(def, class, parameters every call in the file passes the same known value for)."""
        out = []
        for fn, cls, sites in self.seen.values():
            if not sites or any(site is None for site in sites):
                continue
            bound: Dict[str, Value] = {}
            for param, value in sites[0].items():  # type: ignore[union-attr]
                if value == UNKNOWN or not all(site.get(param) == value for site in sites):  # type: ignore
                    continue
                bound[param] = value
            if bound:
                out.append((fn, cls, bound))
        return out


class _ScopeIndex:
    """Module-level statements, classes and functions, for walking each scope once its globals are known."""

    def __init__(self, info: ModuleInfo, summaries: Summaries) -> None:
        self.info = info
        self.summaries = summaries
        self.imports = info.imports
        self.record: Dict[cst.Call, BackwardShape] = {}
        self.returned: List[Tuple["ReturnedLoss", cst.BaseExpression, Shape]] = []
        self.calls: Optional[_CallSites] = None
        self.params: Optional[WrappedParams] = None
        self.walked = _definitions_to_walk(info.module, info.imports)

    def _init_params(self, cls: cst.ClassDef, init: cst.FunctionDef) -> Dict[str, Value]:
        """What the class's instantiations elsewhere pass to its `__init__`, when a wrap and the
        class runs a backward."""
        if self.params is None or not _lacks_gradient_somewhere(cls, self.imports):
            return {}
        return self.params.of_init(cls, init)

    def _walker(self, cls: Optional[ClassRef] = None) -> Walker:
        return Walker(self.summaries.evaluator(self.info, cls), self.imports, self.record, self.calls)

    def run(self) -> Dict[cst.Call, BackwardShape]:
        module = self.info.module
        counts = self.info.counts
        functions = {
            stmt.name.value: stmt
            for stmt in module.body
            if isinstance(stmt, cst.FunctionDef) and counts.get(stmt.name.value) == 1
        }
        self.calls = _CallSites(functions, self.info, self.summaries)
        module_env = self._walker().block(module.body, {})
        globals_env = {k: v for k, v in module_env.items() if counts.get(k) == 1 and "." not in k}
        self._scope_children(module.body, globals_env, None)
        # Second pass over the functions whose calls in this file pass known criteria or shapes.
        calls, self.calls = self.calls, None
        for fn, cls, bound in calls.agreed():
            if id(fn) in self.walked:
                self._function(fn, globals_env, cls, bound)
        return self.record

    def _scope_children(self, body, globals_env, cls: Optional[ClassRef]) -> None:
        """Walk every function and class defined directly or nested in `body` (those that can
        record a root: see `_definitions_to_walk`)."""
        for node in definitions(body):
            if id(node) not in self.walked:
                continue
            if isinstance(node, cst.ClassDef):
                self._class(node, globals_env)
            else:
                self._function(node, globals_env, cls)

    def _class(self, cls: cst.ClassDef, globals_env) -> None:
        # Class-level statements are a scope of their own.
        self._walker().block(cls.body, dict(globals_env))
        ref = (self.info, cls)
        for node in definitions(cls.body.body):
            if id(node) not in self.walked:
                continue
            if isinstance(node, cst.ClassDef):
                self._class(node, globals_env)
            else:
                self._function(node, globals_env, ref)

    def _function(self, fn: cst.FunctionDef, globals_env, cls: Optional[ClassRef], bound=None) -> None:
        local = param_names(fn) + sorted(assigned_keys(fn.body))
        env = forget(globals_env, local)
        if cls is not None and param_names(fn)[:1] == ["self"]:
            env.update(self.summaries.class_env(cls))
        if cls is not None and fn.name.value in _STEP_HOOKS and "batch" in param_names(fn):
            env["batch"] = DATA  # Lightning hands its step hooks a batch of the loader
        if cls is None and self.params is not None and _lacks_gradient_somewhere(fn, self.imports):
            env.update(self.params.of_function(fn))  # `train(wrapped_model, ...)` in another module
        if bound:
            env.update(bound)
        add_annotated(env, fn, self.imports)
        walker = self._walker(cls if param_names(fn)[:1] == ["self"] else None)
        walker.helpers = True
        walker.block(fn.body, env)
        if cls is not None and fn.name.value == "training_step" and self._automatic_lightning(cls):
            self._returned_losses(walker)
        self._scope_children(fn.body.body, forget(globals_env, local), None)

    def _automatic_lightning(self, cls: ClassRef, depth: int = 0) -> bool:
        """A LightningModule (or a project subclass of one) that leaves the backward to Lightning:
        no `automatic_optimization` anywhere in the class."""
        info, node = cls
        if depth == 0 and "automatic_optimization" in info.module.code_for_node(node):
            return False
        for base in node.bases:
            if (info.imports.resolve(base.value) or "").endswith("LightningModule"):
                return True
        return depth < 3 and any(self._automatic_lightning(b, depth + 1) for b in self.summaries.bases(cls))

    def _returned_losses(self, walker: Walker) -> None:
        """What `training_step` returns (the tensor, or the "loss" of a dict) is what Lightning
        calls backward on."""
        for node, value in zip(walker.return_nodes, walker.returns):
            expr = node.value
            if expr is None:
                continue
            if isinstance(value, Struct):
                value = value.get("loss")
                if isinstance(expr, cst.Dict):
                    expr = next(
                        (e.value for e in expr.elements if isinstance(e, cst.DictElement) and _key(e) == "loss"),
                        expr,
                    )
            if isinstance(value, Shape) and value.is_nonscalar:
                self.returned.append((ReturnedLoss(node, expr), expr, value))


def _definitions_to_walk(module: cst.Module, imports: ImportMap) -> Set[int]:
    """ids of the functions and classes whose walk can record something: those holding a backward
    call or a `training_step` (the roots recorded are lexically inside the walked scope), and
    those holding a call that may reach one of those functions (`f(...)`, `self.f(...)`,
    `obj.f(...)`: what `_CallSites` notes for the second pass). The rest of a large module
    (most of a library file with one backward) is never walked: it could record nothing."""
    _, ends, at = preorder(module)
    definitions = typed(module, cst.FunctionDef, cst.ClassDef)
    calls = typed(module, cst.Call)
    hot = sorted(
        [at[id(c)] for c in calls if backward_call(c, imports) is not None]  # type: ignore[arg-type]
        + [at[id(d)] for d in definitions if type(d) is cst.FunctionDef and d.name.value == "training_step"]
    )

    def holding(points: List[int]) -> List[cst.CSTNode]:
        out = []
        for node in definitions:
            start = at[id(node)]
            i = bisect.bisect_left(points, start)
            if i < len(points) and points[i] < ends[start]:
                out.append(node)
        return out

    names = {d.name.value for d in holding(hot) if type(d) is cst.FunctionDef}
    for call in calls:
        func = call.func  # type: ignore[attr-defined]
        kind = type(func)
        if (kind is cst.Name and func.value in names) or (kind is cst.Attribute and func.attr.value in names):
            hot.append(at[id(call)])
    hot.sort()
    return {id(node) for node in holding(hot)}


@dataclass(frozen=True)
class ReturnedLoss:
    """A backward Lightning runs for you: on what `training_step` returns (automatic optimization)."""

    node: cst.Return
    tensor: cst.BaseExpression
    kind: str = "lightning"
    gradient: None = None


def _key(element: cst.DictElement) -> Optional[str]:
    key = element.key
    if isinstance(key, cst.SimpleString):
        value = key.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _main_path(path: str) -> str:
    if not path or path in ("-", "<stdin>"):
        return "-"
    return os.path.abspath(path)


def backward_shapes(
    module: cst.Module, imports: ImportMap, path: str = "-", project_root: Optional[str] = None
) -> Dict[cst.Call, BackwardShape]:
    """Every backward call in the module with the inferred shape of each root it starts from."""
    return _index(module, imports, path, project_root).record


def _index(module: cst.Module, imports: ImportMap, path: str, project_root: Optional[str]) -> "_ScopeIndex":
    info = ModuleInfo(module, _main_path(path), imports)
    summaries = Summaries(ModuleLoader(info, project_root))
    index = _ScopeIndex(info, summaries)
    if project_root is not None and info.path != "-":
        index.params = WrappedParams(info, summaries, project_root)
        summaries.init_params = index._init_params
    try:
        index.run()
    finally:
        _ASSIGNED.clear()  # keep no tree alive after the file is done
    return index


def _no_gradient(call: BackwardCall) -> bool:
    """No `gradient` argument (or `None`) and no *args/**kwargs that might pass one."""
    gradient = call.gradient
    if gradient is not None and not (isinstance(gradient, cst.Name) and gradient.value == "None"):
        return False
    return not unknown_arguments(call.node)


def _lacks_gradient_somewhere(module: cst.CSTNode, imports: ImportMap) -> bool:
    """Is there a backward call without a gradient (or a Lightning `training_step`, whose returned
    loss Lightning backpropagates)? Only those can be reported, so without one the scope index
    (shapes of every function) need not be built."""
    for node in walk(module):
        kind = type(node)
        if kind is cst.Call:
            found = backward_call(node, imports)  # type: ignore[arg-type]
            if found is not None and _no_gradient(found):
                return True
        elif kind is cst.FunctionDef and node.name.value == "training_step":  # type: ignore[attr-defined]
            return True
    return False


def nonscalar_roots(
    module: cst.Module, imports: ImportMap, path: str = "-", project_root: Optional[str] = None
) -> List[Tuple[Union[BackwardCall, ReturnedLoss], cst.BaseExpression, Shape]]:
    """Backward calls without a `gradient` whose root is proven not to be a scalar (always, or
    for any batch of more than one sample, or on more than one GPU: the shape's kind says which),
    and the losses `training_step` returns to Lightning that are."""
    found: List[Tuple[Union[BackwardCall, ReturnedLoss], cst.BaseExpression, Shape]] = []
    if not _lacks_gradient_somewhere(module, imports):
        return found
    index = _index(module, imports, path, project_root)
    for item in index.record.values():
        call = item.call
        if not _no_gradient(call):
            continue
        for root, shape in item.roots:
            if shape.is_nonscalar:
                found.append((call, root, shape))
                break
    found.extend(index.returned)
    return found
