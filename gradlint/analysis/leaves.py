"""Losses made leaves: the fact GL007 reads.

"element 0 of tensors does not require grad and does not have a grad_fn" is often "fixed" by making
the loss require grad: `loss.requires_grad = True`, `loss.requires_grad_()`,
`torch.tensor(loss.item(), requires_grad=True)`, `Variable(loss.data, requires_grad=True)`. The
backward then starts from a *leaf*: it runs without error, reaches no parameter, and the model
never trains. This module finds such a leaf-making statement when

1. what the leaf is made from was computed (a model, a criterion, an environment step, a helper of
   the file...) rather than built from constants or data (a hand-made parameter
   `w = torch.randn(3, requires_grad=True)` and an input made to require grad are left alone), and
2. a backward of the same function, after it, starts from the leaf or from values computed from it
   by tensor arithmetic alone: no module, unknown call, parameter or other graph value on the way
   (saliency maps and adversarial examples pass the model, so they are not reported).

It reads the def-use scopes GL002 builds (`graphs.GraphAnalysis`): the definitions of each name and
their classes. The path from the leaf to the root is followed through the last definition before
each use in source order (a straight-line trace); loops and branches that could change it make the
trace give up, and the rule stays silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.backward import BackwardCall
from gradlint.analysis.graph_scope import Scope
from gradlint.analysis.retained import GraphAnalysis
from gradlint.analysis.names import dotted
from gradlint.analysis.reads import (
    BUILTINS,
    CUT_METHODS,
    DATA_METHODS,
    INERT,
    OBJECT_METHODS,
    RECEIVER_METHODS,
    is_false,
    key_of,
    keyword_arg,
)
from gradlint.analysis.tree import SCOPES, walk

# Parameters whose name says they hold a computed value (a loss, an output, a reward).
_COMPUTED_PARAM_WORDS = ("loss", "output", "logit", "pred", "score", "reward", "cost", "energy")
_VARIABLE = ("torch.autograd.Variable", "torch.autograd.variable.Variable", "Variable")
REACHED, BLOCKED = "reached", "blocked"


@dataclass(frozen=True)
class MadeLeaf:
    """A leaf made from a computed value, then backpropagated without reaching a parameter."""

    node: cst.CSTNode  # what to report: the assignment, or the `requires_grad_()` call
    leaf: str  # the name holding the leaf
    source: str  # source text of what it was made from
    backward: BackwardCall


def made_leaves(analysis: GraphAnalysis) -> List[MadeLeaf]:
    found: List[MadeLeaf] = []
    for scope in analysis.scopes:
        makings = list(_leaf_makings(scope))
        if not makings:
            continue
        order = {node: index for index, node in enumerate(walk(scope.node))}
        backwards = [
            (stmt, later.backward)
            for stmt, calls in scope.later_calls.items()
            for later in calls
            if later.backward is not None and later.tensor is not None
        ]
        for node, key, sources in makings:
            at = order.get(node)
            if at is None or not _computed_sources(scope, sources, order, at):
                continue
            if _in_place(node) and _graph_intact(analysis.module, scope, key):
                continue  # `loss.requires_grad_()` on a loss that still has its graph: a no-op
            for stmt, backward in sorted(backwards, key=lambda pair: order.get(pair[0], -1)):
                where = order.get(stmt, -1)
                if where <= at:
                    continue
                if backward.tensor is None:
                    continue
                if not _loss_like(analysis.module, key, sources, backward.tensor):
                    continue
                if _trace(scope, backward.tensor, key, at, where, order, set()) == REACHED:
                    source = " ".join(analysis.module.code_for_node(sources[0]).split()) if sources else key
                    found.append(MadeLeaf(node, key, source, backward))
                    break
    return found


_LOSS_WORDS = ("loss", "cost", "objective", "err", "reward", "penalty", "risk")
_CUT_WORDS = (".item()", ".data", ".detach()", "float(", ".numpy()", ".tolist()")


def _loss_like(module: cst.Module, key: str, sources: List[cst.BaseExpression], root: cst.BaseExpression) -> bool:
    """Does the leaf stand for a loss rather than an input of a small autograd computation
    (`x = torch.tensor(data, requires_grad=True); (x ** 2).sum().backward()`)? It is the backward's
    root itself, is named like a loss, or is rebuilt from a value whose graph was cut explicitly."""
    if key_of(root) == key and isinstance(root, (cst.Name, cst.Attribute)):
        return True
    if any(word in key.lower() for word in _LOSS_WORDS):
        return True
    return any(word in module.code_for_node(source) for source in sources for word in _CUT_WORDS)


# --------------------------------------------------------------------------------------------
# Where leaves are made


def _leaf_makings(scope: Scope) -> Iterator[Tuple[cst.CSTNode, str, List[cst.BaseExpression]]]:
    """(node to report, the leaf's name, the expressions it is made from)."""
    for stmt in scope.places:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Assign) and len(small.targets) == 1:
                target = small.targets[0].target
                if isinstance(target, cst.Attribute) and target.attr.value == "requires_grad":
                    key = key_of(target.value)
                    if key is not None and isinstance(small.value, cst.Name) and small.value.value == "True":
                        yield small, key, [target.value]
                    continue
                key = key_of(target) if isinstance(target, (cst.Name, cst.Attribute)) else None
                sources = _leaf_call_sources(scope, small.value)
                if key is not None and sources is not None:
                    yield small, key, sources
            elif isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
                call = small.value
                func = call.func
                if isinstance(func, cst.Attribute) and func.attr.value == "requires_grad_" and _requires(call):
                    key = key_of(func.value)
                    if key is not None and isinstance(func.value, (cst.Name, cst.Attribute)):
                        yield small, key, [func.value]


def _requires(call: cst.Call) -> bool:
    """`requires_grad_()` / `requires_grad_(True)`, not `requires_grad_(False)`."""
    args = [a for a in call.args if not a.star]
    return not args or not is_false(args[0].value)


def _leaf_call_sources(scope: Scope, value: cst.BaseExpression) -> Optional[List[cst.BaseExpression]]:
    """What a leaf-making call is made from: `torch.tensor(v, requires_grad=True)`,
    `Variable(t.data, requires_grad=True)`, `v.detach().requires_grad_()`, (`.to(device)` after any)."""
    while isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in (
        "to", "cuda", "float", "double"
    ):
        value = value.func.value
    if not isinstance(value, cst.Call):
        return None
    func = value.func
    if isinstance(func, cst.Attribute) and func.attr.value == "requires_grad_":
        return [func.value] if _requires(value) else None
    requires = keyword_arg(value, "requires_grad")
    if requires is None or is_false(requires):
        return None
    qualified = scope.analysis.imports.resolve(func) or ""
    if qualified in ("torch.tensor", "torch.as_tensor", "torch.Tensor") or qualified in _VARIABLE:
        return [a.value for a in value.args if a.keyword is None and not a.star][:1]
    return None


# --------------------------------------------------------------------------------------------
# Was the leaf made from a computed value?


def _in_place(node: cst.CSTNode) -> bool:
    """`loss.requires_grad = True` / `loss.requires_grad_()`: the tensor itself is flagged, which
    makes a leaf only of a tensor without a graph (on one with a `grad_fn` that requires grad it
    changes nothing)."""
    if isinstance(node, cst.Expr):
        return True
    return isinstance(node, cst.Assign) and any(
        isinstance(t.target, cst.Attribute) and t.target.attr.value == "requires_grad" for t in node.targets)


_CUT_CALLS = ("torch.tensor(", "torch.as_tensor(", "torch.from_numpy(", "no_grad", "inference_mode")


def _graph_intact(module: cst.Module, scope: Scope, key: str) -> bool:
    """Is `key` defined in this scope only by computations the code shows keep their graph: no cut
    (`_cut`) on the way and no definition under `torch.no_grad()`? A parameter or a name with no
    definition here is not known to be intact."""
    definitions = scope.defs.get(key, ())
    if not definitions or key in scope.params:
        return False
    values = [getattr(d.node, "value", None) for d in definitions]
    if any(not isinstance(v, cst.BaseExpression) for v in values):
        return False
    gradless = _without_grad(module, scope)
    if any(id(d.node) in gradless for d in definitions):
        return False
    return not _cut(module, scope, values, set(), gradless)  # type: ignore[arg-type]


def _without_grad(module: cst.Module, scope: Scope) -> Set[int]:
    """Ids of the nodes inside `with torch.no_grad():` / `inference_mode()` blocks of the scope."""
    inside: Set[int] = set()
    for node in walk(scope.node, SCOPES):
        if isinstance(node, cst.With) and any(
            word in module.code_for_node(item.item) for item in node.items for word in ("no_grad", "inference_mode")
        ):
            inside.update(id(n) for n in walk(node.body))
    return inside


def _cut(module: cst.Module, scope: Scope, exprs: List[cst.BaseExpression], seen: Set[str],
         gradless: Set[int]) -> bool:
    """Does the code show the value's graph cut on the way (`.item()`, `.detach()`, `.data`,
    `float(...)`, a new tensor from numbers, a definition under `no_grad`), following the names'
    definitions?"""
    for expr in exprs:
        text = module.code_for_node(expr)
        if any(word in text for word in _CUT_WORDS + _CUT_CALLS):
            return True
        for node in walk(expr, SCOPES):
            if not isinstance(node, (cst.Name, cst.Attribute)):
                continue
            key = key_of(node)
            if key is None or key in seen:
                continue
            seen.add(key)
            definitions = scope.defs.get(key, ())
            if any(id(d.node) in gradless for d in definitions):
                return True
            values = [getattr(d.node, "value", None) for d in definitions]
            if _cut(module, scope, [v for v in values if isinstance(v, cst.BaseExpression)], seen, gradless):
                return True
    return False


def _computed_sources(scope: Scope, sources: List[cst.BaseExpression], order, at: int) -> bool:
    seen: Set[str] = set()
    return any(_computed(scope, source, seen) for source in sources)


def _computed(scope: Scope, expr: cst.CSTNode, seen: Set[str]) -> bool:
    """Does the value come (through any definitions, cuts like `.item()` included) from a call the
    analysis does not know: a model, a criterion, an environment, a helper?"""
    imports = scope.analysis.imports
    for node in walk(expr, SCOPES):
        if isinstance(node, cst.Call):
            if _unknown_callee(scope, node.func):
                return True
        elif isinstance(node, (cst.Name, cst.Attribute)):
            key = key_of(node)
            if key is None or key in seen or key.split(".")[0] in imports.aliases or key in BUILTINS:
                continue
            seen.add(key)
            if key in scope.params and any(word in key.lower() for word in _COMPUTED_PARAM_WORDS):
                return True
            for definition in scope.defs.get(key, ()):
                if definition.loop_target is not None:
                    if _computed(scope, definition.loop_target.iter, seen):
                        return True
                    continue
                value = getattr(definition.node, "value", None)
                if isinstance(value, cst.BaseExpression) and _computed(scope, value, seen):
                    return True
    return False


def _unknown_callee(scope: Scope, func: cst.BaseExpression) -> bool:
    imports = scope.analysis.imports
    if isinstance(func, cst.Attribute):
        method = func.attr.value
        if method in CUT_METHODS or method in RECEIVER_METHODS or method in DATA_METHODS or method in OBJECT_METHODS:
            return False
        if method in ("requires_grad_", "append", "items", "values", "keys", "get", "format", "join", "split"):
            return False
    name = dotted(func)
    if name is None:
        return True
    head = name.split(".")[0]
    if head in imports.aliases:
        return False  # torch, numpy, math, a library: functions of their arguments
    if isinstance(func, cst.Name) and (func.value in BUILTINS or func.value[:1].isupper()):
        return func.value[:1].isupper() and scope.is_instance(func.value)
    return True


# --------------------------------------------------------------------------------------------
# Does a backward start from the leaf without passing a parameter?


def _trace(scope: Scope, expr: cst.BaseExpression, leaf: str, at: int, before: int, order: Dict, seen: Set) -> str:
    """REACHED when the value of `expr` at position `before` is computed from the leaf (made at
    `at`) by tensor arithmetic alone; BLOCKED when anything else with possible history flows in."""
    reads = scope.analysis.reads.reads(expr)
    if reads.opaque or reads.receivers or reads.object_args or reads.ctors:
        return BLOCKED
    reached = False
    for key in reads.keys:
        result = _trace_name(scope, key, leaf, at, before, order, seen)
        if result == BLOCKED:
            return BLOCKED
        reached = reached or result == REACHED
    return REACHED if reached else INERT


def _trace_name(scope: Scope, key: str, leaf: str, at: int, before: int, order: Dict, seen: Set) -> str:
    if (key, before) in seen:
        return BLOCKED  # a cycle: give up
    seen.add((key, before))
    between = [
        d for d in scope.defs.get(key, ())
        if at < order.get(d.node, -1) < before
    ]
    if between:
        latest = max(between, key=lambda d: order.get(d.node, -1))
        if latest.loop_target is not None or latest.no_grad:
            return BLOCKED
        value = getattr(latest.node, "value", None)
        if isinstance(latest.node, cst.AugAssign):
            own = _trace_name(scope, key, leaf, at, order.get(latest.node, -1), order, seen)
            rest = _trace(scope, latest.node.value, leaf, at, order.get(latest.node, -1), order, seen)
            if BLOCKED in (own, rest):
                return BLOCKED
            return REACHED if REACHED in (own, rest) else INERT
        if not isinstance(value, cst.BaseExpression):
            return BLOCKED
        return _trace(scope, value, leaf, at, order.get(latest.node, -1), order, seen)
    if key == leaf:
        return REACHED
    # Defined before the leaf was made (or outside the function): data and constants only.
    return INERT if scope.class_of(key) == INERT else BLOCKED
