"""Which parameters of a function a retained graph reaches into (GL002's caller check).

A graph kept by `retain_graph=True` inside a helper may reach into what a caller passed (features
its encoder made); then the caller's later backward can walk it again. These are the parameters
that count: read by the graph's roots, possibly carrying a graph (not modules, plain settings, known
data, tensors made leaves first), and bound as parameters where the backward runs (the def-use
graph: a name rebound to each batch before the backward is not the caller's value).
"""

from __future__ import annotations

from typing import List, Optional, Set

import libcst as cst

from gradlint.analysis.graph_scope import Scope
from gradlint.analysis.reads import INERT, LEAF
from gradlint.analysis.tree import block_statements, walk


def graph_params(scope: Scope, root_keys: Set[str], at: cst.CSTNode) -> Set[str]:
    """Parameters of the scope's function that the graph of `root_keys` (used at `at`) reads and
    that may carry a graph from the caller (not modules called, not plain settings, not known
    data, not tensors the function makes leaves of before `at`)."""
    found = {
        key
        for key in scope.closure(root_keys)
        if key in scope.params
        and key != "self"
        and key not in scope.plain_params
        and key not in scope.objects
        and scope.known_params.get(key) not in (INERT, LEAF)
    }
    if found and isinstance(scope.node, cst.FunctionDef):
        found -= {key for key in _made_leaves(block_statements(scope.node.body), at) if key not in scope.defs}
    if found:
        found &= _parameters_reaching(scope, at, found)
    return found


def _parameters_reaching(scope: Scope, at: cst.CSTNode, names: Set[str]) -> Set[str]:
    """Those of `names` whose binding as a parameter reaches the backward `at` through the
    flow-sensitive def-use graph: `for x_b, y_b in loader: x = x_b.cuda()` rebinds the parameter
    `x` before the backward, so what the caller passed as `x` is not in its graph. A call the
    def-use graph did not record keeps every name (nothing proven)."""
    reaching = scope.reaching()
    reaches = reaching.at_call.get(at) if isinstance(at, cst.Call) else None
    if reaches is None:
        return set(names)
    found: Set[str] = set()
    seen: Set[int] = set()
    todo = list(reaches)
    while todo:
        reach = todo.pop()
        if id(reach) in seen:
            continue
        seen.add(id(reach))
        if reach.definition is None and reach.key in names:
            found.add(reach.key)
        todo.extend(reach.sources)
    return found


def _made_leaves(statements: List[cst.CSTNode], at: cst.CSTNode, found: Optional[Set[str]] = None) -> Set[str]:
    """Names given `x.requires_grad = ...` by statements that always run before `at` (straight-line
    code of the body and of `with` blocks). Torch refuses to change the flag of a tensor that has
    history, so past such a statement the tensor is a leaf: no caller's graph reaches through it."""
    found = set() if found is None else found
    for stmt in statements:
        if any(node is at for node in walk(stmt)):
            if isinstance(stmt, cst.With):
                _made_leaves(block_statements(stmt.body), at, found)
            return found
        if isinstance(stmt, cst.With):
            _made_leaves(block_statements(stmt.body), at, found)
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if not isinstance(small, cst.Assign):
                    continue
                for target in small.targets:
                    flag = target.target
                    if (
                        isinstance(flag, cst.Attribute)
                        and flag.attr.value == "requires_grad"
                        and isinstance(flag.value, cst.Name)
                    ):
                        found.add(flag.value.value)
    return found


def made_from_parameters(scope: Scope, tensor: cst.BaseExpression, at: cst.CSTNode) -> Set[str]:
    """The parameters a backward root is built from when it is built from them by known tensor
    operations only (`(loss * scale)`, `loss / n`, `total = loss.mean()`), with nothing of its own
    that a module or an unknown call made: the graph it keeps is, but for a few nodes, the graph
    the caller passed in, like a root that *is* the parameter. Empty when some step is a call we
    cannot see into (`head(feats).sum()` makes a graph of the function's own), or some value
    comes from elsewhere than the parameters and the function's own assignments (`hidden @ w`
    for `w` in `self.weights`: leaves of the function's own)."""
    reads = scope.analysis.reads
    seen: Set[str] = set()
    todo = [reads.reads(tensor)]
    while todo:
        found = todo.pop()
        if found.opaque or found.ctors or found.object_args:
            return set()
        if any(not scope.library_object(r) for r in found.receivers):
            return set()
        for key in found.keys - seen:
            seen.add(key)
            if key not in scope.params and key not in scope.defs:
                if scope.class_of(key) == INERT:
                    continue  # a constant of the module
                return set()
            for definition in scope.defs.get(key, ()):
                if definition.loop_target is not None:
                    return set()
                if not scope.inert_definition(definition):
                    todo.append(definition.reads)
    return graph_params(scope, seen, at)
