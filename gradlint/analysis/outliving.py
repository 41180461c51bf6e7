"""Where a retained graph may be walked from outside the code GL002 reads.

Two ways a graph kept by `retain_graph=True` can be walked again without a backward call the
analysis sees:

- **History stores.** A value with history put in a container or attribute that outlives the call
  (`self.memory.append((state, out))`, a module-level list filled by a function, `self.h = out`)
  is read again by later calls: a loss computed from it (a replay buffer's states carrying an
  encoder's graph) is backpropagated once per call, through the same stored graph.
  `history_stores` names those attributes and globals; a graph that reads one is never proven
  unused.
- **Calls we cannot see into.** A function of another package (`trpo.hessian_vector_product(kl,
  params)`, `functools.partial(fvp, kl)`) given a value of the graph may run a backward through it
  (a Hessian-vector product), and so may calling what it returned, or a lambda that captured the
  graph. `opaque_walker` says which calls count as such a later backward.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Optional, Set, Tuple, cast

import libcst as cst

from gradlint.analysis.backward import backward_call
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.reads import BUILTINS, CONTAINER_STORES, INERT, LEAF, LOGGING_METHODS, ReadCollector, target_keys
from gradlint.analysis.tree import typed, walk

# Packages whose functions take tensors to compute, show or save numbers and never run autograd.
DATA_PACKAGES = frozenset(
    "numpy math statistics random time os sys json pickle logging warnings PIL matplotlib sklearn scipy "
    "pandas tqdm wandb tensorboardX torchvision cv2 imageio einops".split()
)


_ASSIGNMENTS = frozenset({cst.Assign, cst.AugAssign, cst.AnnAssign})


def history_stores(module: cst.Module, reads: ReadCollector) -> Tuple[FrozenSet[str], FrozenSet[str], FrozenSet[str]]:
    """(filled attributes, assigned attributes, global names) the file fills with values that may
    carry history.

    Filled attributes: `x.memory.append(v)` / `x.memory[k] = v` with `v` not history-free.
    Assigned attributes: `self.h = v` outside `__init__` with `v` computed rather than constructed
    (`self.loader = DataLoader(ds)` is an object, not a stored graph); what a caller knows of the
    assignments (`set_input` given loader batches) may still prove them data. Globals:
    module-level names that a function appends such values to, stores into by subscript, or
    rebinds after `global`."""
    attributes: Set[str] = set()
    assigned: Set[str] = set()
    names: Set[str] = set()
    module_names = _module_names(module)
    functions = cast(List[cst.FunctionDef], typed(module, cst.FunctionDef))
    node: Any
    for fn in functions:
        local = _locals(fn)
        declared = {n.name.value for g in typed(fn.body, cst.Global) for n in g.names}  # type: ignore[attr-defined]
        sources: Dict[cst.FunctionDef, Dict[str, list]] = {}  # the function's plain-name values, once
        for node in walk(fn.body, (cst.FunctionDef,)):
            kind = type(node)  # exact types: LibCST's node classes are final (isinstance is slower)
            if kind is cst.Call and type(node.func) is cst.Attribute:
                if node.func.attr.value not in CONTAINER_STORES:
                    continue
                if not any(_carries(reads, arg.value, fn, sources) for arg in node.args):
                    continue
                _note_store(node.func.value, attributes, names, local, module_names)
            elif kind in _ASSIGNMENTS and node.value is not None:
                if not _carries(reads, node.value, fn, sources):
                    continue
                targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
                for target in targets:
                    for part in _flat(target):
                        if isinstance(part, cst.Subscript):
                            _note_store(part.value, attributes, names, local, module_names)
                        elif isinstance(part, cst.Attribute) and fn.name.value != "__init__":
                            if not reads.reads(node.value).ctors:
                                assigned.add(part.attr.value)
                        elif isinstance(part, cst.Name) and part.value in declared:
                            names.add(part.value)
    return frozenset(attributes), frozenset(assigned), frozenset(names)


def _carries(reads: ReadCollector, value: cst.BaseExpression, fn: Optional[cst.FunctionDef] = None,
             memo: Optional[Dict[cst.FunctionDef, Dict[str, list]]] = None) -> bool:
    """May the value have history (not a constant, a detached value or a new leaf)? A name the
    function only ever assigns such values (`weight = nn.Parameter(...)`) has none either. `memo`
    keeps each function's plain-name values across the questions asked of it."""
    found = reads.reads(value)
    if found.kind in (INERT, LEAF):
        return False
    if fn is None or found.opaque or found.ctors or found.receivers:
        return True
    if memo is None:
        memo = {}
    sources = memo.get(fn)
    if sources is None:
        sources = memo[fn] = _local_values(fn)
    for key in found.keys:
        values = sources.get(key)
        if not values or any(reads.reads(v).kind not in (INERT, LEAF) for v in values):
            return True
    return False


_BINDING_ELSE = frozenset({cst.For, cst.CompFor, cst.AugAssign, cst.AnnAssign, cst.With, cst.NamedExpr})


def _local_values(fn: cst.FunctionDef) -> Dict[str, list]:
    """Values assigned to plain names in a function (None for a name bound otherwise)."""
    out: Dict[str, list] = {}
    node: Any
    for node in walk(fn.body, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
        kind = type(node)  # exact types: LibCST's node classes are final (isinstance is slower)
        if kind is cst.Assign and all(type(t.target) is cst.Name for t in node.targets):
            for t in node.targets:
                out.setdefault(t.target.value, []).append(node.value)
        elif kind in _BINDING_ELSE:
            for name in typed(node.target if hasattr(node, "target") else node, cst.Name):
                out.setdefault(name.value, []).append(None)  # type: ignore[attr-defined]
        elif kind is cst.Assign:
            for t in node.targets:
                for name in typed(t.target, cst.Name):
                    out.setdefault(name.value, []).append(None)  # type: ignore[attr-defined]
    return {k: v for k, v in out.items() if None not in v}


def _note_store(
    receiver: cst.BaseExpression, attributes: Set[str], names: Set[str], local: Set[str], module_names: Set[str]
) -> None:
    while isinstance(receiver, cst.Subscript):
        receiver = receiver.value
    if isinstance(receiver, cst.Attribute):
        attributes.add(receiver.attr.value)
    elif isinstance(receiver, cst.Name) and receiver.value not in local and receiver.value in module_names:
        names.add(receiver.value)


def _flat(target: cst.BaseExpression):
    if isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _flat(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from _flat(target.value)
    else:
        yield target


def _module_names(module: cst.Module) -> Set[str]:
    found: Set[str] = set()
    for stmt in module.body:
        for node in walk(stmt, (cst.FunctionDef, cst.ClassDef)):
            kind = type(node)
            if kind is cst.AssignTarget or kind is cst.AnnAssign or kind is cst.AugAssign:
                found |= set(target_keys(node.target))  # type: ignore[attr-defined]
    for node in typed(module, cst.Global):
        found |= {n.name.value for n in node.names}  # type: ignore[attr-defined]
    return found


def _locals(fn: cst.FunctionDef) -> Set[str]:
    """Names a function binds itself (parameters, assignments, loop targets) and does not declare global."""
    params = fn.params
    bound = {p.name.value for p in list(params.posonly_params) + list(params.params) + list(params.kwonly_params)}
    for node in walk(fn.body, (cst.FunctionDef, cst.ClassDef)):
        kind = type(node)
        if kind is cst.AssignTarget or kind is cst.For or kind is cst.CompFor:
            bound |= {k for k in target_keys(node.target) if "." not in k}  # type: ignore[attr-defined]
        elif kind is cst.Global:
            bound -= {n.name.value for n in node.names}  # type: ignore[attr-defined]
    return bound


def persistent_key(key: str, attributes: FrozenSet[str], names: FrozenSet[str]) -> bool:
    """Is `key` (read but not assigned in a function) a store that outlives calls?"""
    if "." in key:
        return key.split(".")[1] in attributes
    return key in names


def opaque_walker(call: cst.Call, imports: ImportMap) -> bool:
    """Is `call` a function of another package or project module that may run autograd on what it
    is given (anything imported but torch's own functions and data/plotting packages)?"""
    func = call.func
    text = dotted(func)
    if text is None:
        return False
    head = text.split(".")[0]
    if head not in imports.aliases:
        return False
    qualified = imports.resolve(func) or text
    package = qualified.lstrip(".").split(".")[0]
    if package == "torch" or package in DATA_PACKAGES:
        return False
    last = qualified.split(".")[-1]
    if last[:1].isupper() or last in LOGGING_METHODS:
        return False  # a class builds an object; a logger logs
    return True


def lambda_captures(node: cst.CSTNode) -> Set[str]:
    """Free names of the lambdas in a statement (a lambda called later may walk what it captured)."""
    from gradlint.analysis.reads import free_names

    found: Set[str] = set()
    for inner in walk(node, (cst.FunctionDef, cst.ClassDef)):
        if type(inner) is cst.Lambda:
            found |= free_names(inner)
    return found - BUILTINS


def callee_name(call: cst.Call) -> Optional[str]:
    return call.func.value if isinstance(call.func, cst.Name) else None


class OpaqueCalls:
    """`opaque_walker`, seeing into the project: a function of a project module (`utils.accuracy`)
    is read, and walks nothing when it runs no backward and calls nothing imported but torch's and
    data packages' functions. The project files read are recorded in `consulted`."""

    def __init__(self, imports: ImportMap, path: str, project_root: Optional[str]) -> None:
        from gradlint.analysis.project import Project

        self.imports = imports
        self.path = path
        self.project = Project(path, project_root) if path and path != "-" else None
        self.consulted: Set[str] = set()
        self._memo: Dict[str, bool] = {}

    def __call__(self, call: cst.Call) -> bool:
        if not opaque_walker(call, self.imports):
            return False
        qualified = self.imports.resolve(call.func) or ""
        if qualified not in self._memo:
            self._memo[qualified] = self._project_walker(qualified)
        return self._memo[qualified]

    def _project_walker(self, qualified: str) -> bool:
        from gradlint.analysis.call_sites import load_file
        from gradlint.analysis.helpers import backward_helpers

        if self.project is None or "." not in qualified.lstrip("."):
            return True
        module_name, _, attr = qualified.rpartition(".")
        path = self.project.find_module(module_name, self.path)
        if path is None:
            return True  # another package: we cannot see into it
        target = load_file(path)
        self.consulted.add(path)
        if target is None:
            return True
        functions = {s.name.value: s for s in target.module.body if isinstance(s, cst.FunctionDef)}
        fn = functions.get(attr)
        if fn is None:
            return True
        helpers = backward_helpers(target.module, target.imports)
        for node in walk(fn.body):
            if not isinstance(node, cst.Call):
                continue
            if backward_call(node, target.imports) is not None or opaque_walker(node, target.imports):
                return True
            if isinstance(node.func, cst.Name) and node.func.value in helpers:
                return True
        return False
