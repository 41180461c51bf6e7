"""Project functions whose results carry no history, seen from the file that imports them.

`cached_inps, cached_outs = save_inp_oup_data(model, layer, data)` with `save_inp_oup_data`
imported from a project module: when every `return` of that function gives values the function
itself proves history-free (detached, computed under `torch.no_grad()`, moved off the graph with
`.detach()`), the results are data like a loader's batch, and a loop that reuses them is not carrying
a graph. The function is analysed in its own module with its parameters unknown, so anything it
returns that depends on what the caller passes stays a possible graph.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Optional, Set

import libcst as cst

from gradlint.analysis.call_sites import load_file
from gradlint.analysis.defuse import Definition
from gradlint.analysis.helpers import own_nodes
from gradlint.analysis.names import ImportMap
from gradlint.analysis.outliving import OpaqueCalls
from gradlint.analysis.reads import INERT
from gradlint.analysis.retained import GraphAnalysis

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


def _calls(module: cst.Module):
    from gradlint.analysis.tree import walk

    for node in walk(module):
        if isinstance(node, cst.Call):
            yield node
