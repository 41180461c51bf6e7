"""Facts about the functions of one file that GL002 uses at their call sites.

- `backward_helpers`: functions that run a backward (directly or through each other): a call of one
  is a later backward.
- `detaching_functions`: functions whose every `return` gives a value without history
  (`repackage_hidden`): their results cut the graph.
- `pure_functions`: functions that call nothing unknown (`batchify`, `get_batch`): their results are
  functions of their arguments.
- `stateful_instances`: names bound to instances of classes of the file that keep a tensor with
  history on `self` between calls (an LSTM tagger with `self.hidden`).
- `tensor_holders`: names bound to objects built from tensors (`Categorical(logits=logits)`): their
  methods' results may carry those tensors' history.
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, Iterator, List, Optional, Set

import libcst as cst

from gradlint.analysis.backward import backward_call
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.reads import (
    BUILTINS,
    CONTAINER_STORES,
    INERT,
    ReadCollector,
    param_names,
    reads_around,
    target_keys,
)
from gradlint.analysis.tree import block_statements, typed, walk

def module_functions(module: cst.Module) -> Iterator[cst.FunctionDef]:
    """Every function and method of the module, nested ones included."""
    yield from typed(module, cst.FunctionDef)  # type: ignore[misc]


def own_nodes(fn: cst.FunctionDef) -> Iterator[cst.CSTNode]:
    """Nodes of a function's body that run in it (not in functions nested inside)."""
    return walk(fn.body, (cst.FunctionDef,))


def backward_helpers(module: cst.Module, imports: ImportMap) -> FrozenSet[str]:
    """Names of functions in this module that run a backward, directly or through each other."""
    calls: Dict[str, Set[str]] = {}
    helpers: Set[str] = set()
    for fn in module_functions(module):
        name = fn.name.value
        called = calls.setdefault(name, set())
        for node in own_nodes(fn):
            if type(node) is cst.Call:  # exact type: LibCST's node classes are final
                if backward_call(node, imports) is not None:
                    helpers.add(name)
                text = dotted(node.func)
                if text is not None:
                    called.add(text.split(".")[-1])
    changed = True
    while changed:
        changed = False
        for name, called in calls.items():
            if name not in helpers and called & helpers:
                helpers.add(name)
                changed = True
    return frozenset(helpers)


def stateful_instances(module: cst.Module, reads: ReadCollector) -> FrozenSet[str]:
    """Names bound to instances of classes of this module whose methods (other than `__init__`)
    store a value with history on `self`: each call of such an object continues the last one."""
    stateful_classes: Set[str] = set()
    for node in typed(module, cst.ClassDef):
        for method in block_statements(node.body):  # type: ignore[attr-defined]
            if not isinstance(method, cst.FunctionDef) or method.name.value == "__init__":
                continue
            if any(stores_history_on_self(n, reads) for n in own_nodes(method)):
                stateful_classes.add(node.name.value)  # type: ignore[attr-defined]
                break
    if not stateful_classes:
        return frozenset()
    names: Set[str] = set()
    for node in typed(module, cst.Assign):
        if type(node.value) is cst.Call:  # type: ignore[attr-defined]
            func = node.value.func  # type: ignore[attr-defined]
            while isinstance(func, cst.Attribute) and isinstance(func.value, cst.Call):
                func = func.value.func  # Tagger(...).to(device)
            text = dotted(func)
            if text is not None and text.split(".")[-1] in stateful_classes:
                for target in node.targets:  # type: ignore[attr-defined]
                    names.update(target_keys(target.target))
    return frozenset(names)


_DISTRIBUTION = re.compile(
    r"^(?=[A-Z])\w*(Categorical|Normal|Gaussian|Bernoulli|Beta|Dirichlet|Distribution|Laplace|Gumbel|Poisson|"
    r"Multinomial|Cauchy|Gamma|Uniform|Independent|Binomial)$"
)


def tensor_holders(module: cst.Module, reads: ReadCollector, imports: ImportMap) -> FrozenSet[str]:
    """Names bound to a distribution (a class of `torch.distributions`, or a project class named
    like one: `FixedCategorical`, `TanhNormal`, `DiagGaussian`) built from values that may carry
    history: `dist = Categorical(logits=logits)`, `m = Normal(mu, std)`. Such an object keeps what
    it was given, so a method of it (`dist.log_prob(a)`, `dist.entropy()`) may return a value with
    that history."""
    names: Set[str] = set()
    for node in typed(module, cst.Assign):
        value = node.value  # type: ignore[attr-defined]
        if type(value) is not cst.Call:
            continue
        text = dotted(value.func)
        if text is None or text.startswith("self.") or text.split(".")[-1] in BUILTINS:
            continue
        qualified = imports.resolve(value.func) or ""
        if not (qualified.startswith("torch.distributions.") or _DISTRIBUTION.search(text.split(".")[-1])):
            continue  # a replay buffer, a loader, a module: built from configuration, not tensors
        found = reads.reads(value)
        if found.kind == INERT or not found.keys:
            continue  # made of constants or configuration only (`nn.Linear(4, 8)`)
        for target in node.targets:  # type: ignore[attr-defined]
            if type(target.target) is cst.Name:
                names.add(target.target.value)
    return frozenset(names)


def stored_attributes(module: cst.Module, reads: ReadCollector) -> FrozenSet[str]:
    """Attribute names the file fills with computed values: `x.saved_log_probs.append(log_prob)`,
    `self.hidden = out` in a method other than `__init__`. Read through a module object, such an
    attribute may hold tensors of earlier graphs; any other tensor attribute of a module is taken
    for a parameter or a buffer."""
    names: Set[str] = set()
    for node in typed(module, cst.Call, cst.FunctionDef):
        kind = type(node)
        if kind is cst.Call and type(node.func) is cst.Attribute:  # type: ignore[attr-defined]
            receiver = node.func.value  # type: ignore[attr-defined]
            if node.func.attr.value in CONTAINER_STORES and type(receiver) is cst.Attribute:  # type: ignore[attr-defined]
                if any(reads.reads(arg.value).kind != INERT for arg in node.args):  # type: ignore[attr-defined]
                    names.add(receiver.attr.value)
        elif kind is cst.FunctionDef and node.name.value != "__init__":  # type: ignore[attr-defined]
            for inner in own_nodes(node):  # type: ignore[arg-type]
                if stores_history_on_self(inner, reads):
                    for target in assigned_targets(inner):
                        for key in target_keys(target):
                            if key.startswith("self."):
                                names.add(key.split(".")[1])
    return frozenset(names)


def assigned_targets(node: cst.CSTNode) -> List[cst.BaseAssignTargetExpression]:
    """The targets of an assignment statement (`=`, `+=`, annotated), else none."""
    if isinstance(node, cst.Assign):
        return [t.target for t in node.targets]
    if isinstance(node, (cst.AugAssign, cst.AnnAssign)):
        return [node.target]
    return []


_SELF_STORES = frozenset({cst.Assign, cst.AugAssign, cst.AnnAssign})


def stores_history_on_self(node: cst.CSTNode, reads: ReadCollector) -> bool:
    if type(node) not in _SELF_STORES:  # exact types: LibCST's node classes are final
        return False
    value: Optional[cst.BaseExpression] = node.value  # type: ignore[attr-defined]
    targets = assigned_targets(node)
    if value is None or not any(k.startswith("self.") for t in targets for k in target_keys(t)):
        return False
    found = reads.reads(value)
    return found.kind != INERT or bool(found.ctors)


def pure_functions(
    module: cst.Module, imports: ImportMap, detaching: FrozenSet[str]
) -> Dict[str, FrozenSet[str]]:
    """Module-level functions that call nothing the analysis does not know (only torch, tensor
    methods, builtins and each other), with the module-level names they read. Their results are
    functions of their arguments, like `batchify` and `get_batch` in the word language model."""
    from gradlint.analysis.scalars import assigned_keys

    functions: Dict[str, cst.FunctionDef] = {}
    counts: Dict[str, int] = {}
    for stmt in module.body:
        if isinstance(stmt, cst.FunctionDef):
            counts[stmt.name.value] = counts.get(stmt.name.value, 0) + 1
            functions[stmt.name.value] = stmt
    candidates: Dict[str, FrozenSet[str]] = {}
    for name, fn in functions.items():
        if counts[name] > 1 or fn.decorators or fn.asynchronous is not None:
            continue
        nodes = list(own_nodes(fn))
        if any(isinstance(n, (cst.Yield, cst.Global, cst.Nonlocal, cst.FunctionDef, cst.Lambda)) for n in nodes):
            continue
        local = set(param_names(fn)) | assigned_keys(fn.body)
        free = {n for n in reads_around(fn.body) if n not in local and "." not in n}
        candidates[name] = frozenset(free - set(imports.aliases) - set(BUILTINS))
    changed = True
    while changed:
        changed = False
        reads = ReadCollector(imports, detaching, dict(candidates))
        for name in sorted(candidates):
            for node in own_nodes(functions[name]):
                found = reads.reads(node) if isinstance(node, cst.Call) else None
                if found is not None and (found.opaque or found.receivers):
                    del candidates[name]
                    changed = True
                    break
    return candidates


def detaching_functions(module: cst.Module, imports: ImportMap) -> FrozenSet[str]:
    """Functions whose every `return` gives a value without history (`return h.detach()`,
    `return tuple(repackage_hidden(v) for v in h)`): a greatest fixpoint, so recursion works."""
    returns: Dict[str, List[Optional[cst.BaseExpression]]] = {}
    excluded: Set[str] = set()  # generators, and names defined twice
    for fn in module_functions(module):
        name = fn.name.value
        if name in returns:
            excluded.add(name)
        values = returns.setdefault(name, [])
        for node in own_nodes(fn):
            kind = type(node)
            if kind is cst.Return:
                values.append(node.value)  # type: ignore[attr-defined]
            elif kind is cst.Yield:
                excluded.add(name)
    candidates = {
        name
        for name, values in returns.items()
        if values and name not in excluded and all(v is not None for v in values)
    }
    changed = True
    while changed:
        changed = False
        reads = ReadCollector(imports, frozenset(candidates))
        for name in sorted(candidates):
            if any(reads.reads(value).kind != INERT or reads.reads(value).ctors for value in returns[name]):
                candidates.discard(name)
                changed = True
    return frozenset(candidates)


def detaching_instances(module: cst.Module, imports: ImportMap, detaching: FrozenSet[str]) -> FrozenSet[str]:
    """Names bound only to instances of classes of this module whose `__call__` returns values
    without history (`get = GetLayerInpOut(model, layer)`; `__call__` returns `x.detach()`):
    calling one gives data, like calling a detaching function."""
    reads = ReadCollector(imports, detaching)
    classes: Set[str] = set()
    for node in typed(module, cst.ClassDef):
        for stmt in block_statements(node.body):  # type: ignore[attr-defined]
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == "__call__":
                values = [n.value for n in own_nodes(stmt) if isinstance(n, cst.Return)]
                if any(isinstance(n, cst.Yield) for n in own_nodes(stmt)) or not values:
                    continue
                if all(v is not None and reads.reads(v).kind == INERT and not reads.reads(v).ctors for v in values):
                    classes.add(node.name.value)  # type: ignore[attr-defined]
    if not classes:
        return frozenset()
    bound: Dict[str, bool] = {}
    for node in walk(module):
        if isinstance(node, cst.Assign):
            value = node.value
            made = isinstance(value, cst.Call) and isinstance(value.func, cst.Name) and value.func.value in classes
            for assigned in node.targets:
                for key in target_keys(assigned.target):
                    bound[key] = bound.get(key, True) and made and isinstance(assigned.target, cst.Name)
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor, cst.Param, cst.AsName,
                               cst.NamedExpr, cst.ImportAlias, cst.FunctionDef, cst.ClassDef)):
            named: cst.CSTNode = node.target if isinstance(
                node, (cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor, cst.NamedExpr)
            ) else node.name
            for name in walk(named):
                if isinstance(name, cst.Name):
                    bound[name.value] = False
    return frozenset(name for name, made in bound.items() if made)
