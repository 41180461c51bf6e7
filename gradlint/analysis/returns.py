"""Project functions whose results carry no history, seen from the file that imports them.

`cached_inps, cached_outs = save_inp_oup_data(model, layer, data)` with `save_inp_oup_data`
imported from a project module: when every `return` of that function gives values the function
itself proves history-free (detached, computed under `torch.no_grad()`, moved off the graph with
`.detach()`), the results are data like a loader's batch, and a loop that reuses them is not carrying
a graph. The function is analysed in its own module with its parameters unknown, so anything it
returns that depends on what the caller passes stays a possible graph.

The same flow-sensitive proof applies to the module's own functions and methods
(`history_free_locals`): `self.random_crops(self.fake, self.real)` building its crops with
`torch.tensor(x.data[...])` and returning them returns data, even though its arguments are graphs.
"""

from __future__ import annotations

from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Set

import libcst as cst

from gradlint.analysis.call_sites import load_file
from gradlint.analysis.defuse import Definition
from gradlint.analysis.helpers import own_nodes
from gradlint.analysis.names import ImportMap
from gradlint.analysis.outliving import OpaqueCalls
from gradlint.analysis.reads import INERT
from gradlint.analysis.retained import GraphAnalysis
from gradlint.analysis.tree import block_statements, typed, walk

MAX_FUNCTIONS = 20  # imported functions looked into per file


def history_free_imports(module: cst.Module, imports: ImportMap, walker: OpaqueCalls) -> FrozenSet[str]:
    """Local names of functions imported from project modules (`from pkg.data import collect`)
    that the module calls and that return only values without history."""
    called: Set[str] = set()
    for node in _calls(module):
        if isinstance(node.func, cst.Name) and node.func.value in imports.aliases:
            called.add(node.func.value)
    found: Set[str] = set()
    analyses: Dict[str, Optional[GraphAnalysis]] = {}
    for name in sorted(called)[:MAX_FUNCTIONS]:
        if walker.project is None:
            break
        qualified = imports.aliases[name]
        if "." not in qualified.lstrip(".") or qualified.split(".")[0] == "torch":
            continue
        module_name, _, attr = qualified.rpartition(".")
        path = walker.project.find_module(module_name, walker.path)
        if path is None:
            continue
        target = load_file(path)
        walker.consulted.add(path)
        if target is None:
            continue
        fn = next((s for s in target.module.body if isinstance(s, cst.FunctionDef) and s.name.value == attr), None)
        if fn is None:
            continue
        if path not in analyses:
            try:
                analyses[path] = GraphAnalysis(target.module, target.imports, (), set())
            except RecursionError:
                analyses[path] = None
        analysis = analyses[path]
        if analysis is not None and _returns_no_history(analysis, fn):
            found.add(name)
    return frozenset(found)


_BINDING_KINDS = (cst.AssignTarget, cst.AnnAssign, cst.AugAssign, cst.For, cst.CompFor, cst.AsName)


def history_free_locals(module: cst.Module, imports: ImportMap, known: FrozenSet[str]) -> FrozenSet[str]:
    """Names of functions and methods of this module, called here, each defined once and
    undecorated (but for `staticmethod`/`classmethod`), whose every `return` the function proves
    history-free with its parameters unknown (`known`: imported names already proven so). A name
    the module also imports or binds otherwise is left out: a call of it may reach something else."""
    defined: Dict[str, List[cst.FunctionDef]] = {}
    rebound: Set[str] = set()
    # Only these kinds matter: the module's nodes of them (kept with its index), by exact type
    # (LibCST's node classes are final; isinstance on them goes through ABCMeta).
    for node in typed(module, cst.FunctionDef, *_BINDING_KINDS, cst.Param):
        kind = type(node)
        if kind is cst.FunctionDef:
            defined.setdefault(node.name.value, []).append(node)  # type: ignore[attr-defined,arg-type]
        elif kind is cst.Param:
            rebound.add(node.name.value)  # type: ignore[attr-defined]
        else:
            target = node.name if kind is cst.AsName else node.target  # type: ignore[attr-defined]
            rebound |= {n.value for n in walk(target) if isinstance(n, cst.Name)}
    called: Set[str] = set()
    for node in _calls(module):
        func = node.func
        if isinstance(func, cst.Name):
            called.add(func.value)
        elif isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            called.add(func.attr.value)
    candidates = [
        fns[0]
        for name, fns in sorted(defined.items())
        if name in called and len(fns) == 1 and name not in imports.aliases and name not in rebound
        and _plain_decorators(fns[0])
    ][:MAX_FUNCTIONS]
    if not candidates:
        return frozenset()
    try:
        analysis = GraphAnalysis(module, imports, (), set(), extra_detaching=known)
        return frozenset(
            fn.name.value
            for fn in candidates
            if _returns_no_history(analysis, fn) and not _builds_objects(analysis, fn)
        )
    except RecursionError:
        return frozenset()


def _builds_objects(analysis: GraphAnalysis, fn: cst.FunctionDef) -> bool:
    """Does a `return` of `fn` read a constructor (`return Net(cfg)`)? A factory of modules is not
    a source of data (its result is called), as `helpers.detaching_functions` holds too."""
    return any(
        isinstance(node, cst.Return) and analysis.reads.reads(node.value).ctors for node in own_nodes(fn)
    )


def overridden_methods(
    module: cst.Module, names: FrozenSet[str], defined_elsewhere: Callable[[str], Optional[bool]]
) -> FrozenSet[str]:
    """Those of `names` that are methods of a class here and that another project file defines
    too (an override in a subclass, which `self.m(...)` runs instead), or whose files we cannot
    read (`defined_elsewhere` answers None): their results are not known to be data."""
    methods = {
        stmt.name.value
        for node in walk(module)
        if isinstance(node, cst.ClassDef)
        for stmt in block_statements(node.body)
        if isinstance(stmt, cst.FunctionDef)
    }
    return frozenset(name for name in sorted(names & methods) if defined_elsewhere(name) is not False)


def _plain_decorators(fn: cst.FunctionDef) -> bool:
    return all(
        isinstance(d.decorator, cst.Name) and d.decorator.value in ("staticmethod", "classmethod")
        for d in fn.decorators
    )


def _returns_no_history(analysis: GraphAnalysis, fn: cst.FunctionDef) -> bool:
    scope = analysis.scope_of_chain((fn,))
    values = []
    for node in own_nodes(fn):
        if isinstance(node, (cst.Yield, cst.Await)):
            return False
        if isinstance(node, cst.Return):
            if node.value is None:
                return False
            values.append(node.value)
    if not values:
        return False
    for value in values:
        reads = analysis.reads.reads(value)
        definition = Definition("<return>", reads, value)
        if scope.definition_class(definition, [scope.class_of(k) for k in reads.keys]) != INERT:
            return False
    return True


def _calls(module: cst.Module) -> Iterator[cst.Call]:
    for node in walk(module):
        if isinstance(node, cst.Call):
            yield node
