"""Which later backward can walk a graph kept by `retain_graph=True`? (The fact GL002 reads.)

`retain_graph=True` keeps a graph's saved tensors after its backward so that *another* backward can
walk it again. It is unnecessary when no later backward can reach that graph. This module proves
that, or gives up (and the rule stays silent):

1. The graph must not escape the function: the root or anything computed from or into it is not
   returned, yielded, stored on an attribute or in a container that outlives the function, declared
   global/nonlocal, captured by a nested function, or passed (after the backward) to a call whose
   result is dropped and that we do not know.
2. No backward that runs later in the same pass (later statements of the block and of enclosing
   blocks, `except`/`finally`, loop `else`) starts from a tensor computed, through the definitions
   that reach it, from a tensor of the retained graph (flow-sensitive: a regenerated `fake` is a
   new graph).
3. When the backward is inside a loop, the next iteration must not reach this iteration's graph:
   a value of the graph that the loop body reads before assigning it (a hidden state carried
   without `.detach()`, a tensor computed before the loop) blocks the finding when a backward that
   can still run depends on it.

Scopes (`graph_scope`) classify values; `loop_carry` says what a loop carries between iterations,
`reaching` which definitions reach each backward. Every doubt resolves towards silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.backward import BackwardCall, backward_call, unknown_arguments
from gradlint.analysis.defuse import Block, Later
from gradlint.analysis.graph_scope import Scope
from gradlint.analysis.helpers import (
    backward_helpers,
    detaching_functions,
    pure_functions,
    stateful_instances,
    stored_attributes,
)
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.reads import ReadCollector, is_false, is_true, key_of, param_names
from gradlint.analysis.tree import block_statements, children


@dataclass(frozen=True)
class Verdict:
    """A `retain_graph=True` the analysis proved unnecessary."""

    call: BackwardCall
    retain_arg: cst.Arg
    root: str  # source text of the root tensor


class GraphAnalysis:
    """Scopes of one module and the backward calls in them."""

    def __init__(self, module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...] = (),
                 only: Optional[Set[cst.CSTNode]] = None) -> None:
        """`only`: build the scopes of just these functions and classes (and the module's); the
        others hold nothing GL002 asks about, and no scope reads another but the module's."""
        self.only = only
        self.module = module
        self.imports = imports
        detaching = detaching_functions(module, imports)
        self.reads = ReadCollector(imports, detaching, pure_functions(module, imports, detaching))
        self.reads.stateful = stateful_instances(module, self.reads)
        self.stored_attributes = stored_attributes(module, self.reads)
        self.backward_functions = tuple(backward_functions)
        self.helpers = backward_helpers(module, imports)
        self.scopes: List[Scope] = []
        self.scope_of: Dict[cst.Call, Scope] = {}
        self.statement_of: Dict[cst.Call, cst.CSTNode] = {}
        self._build(list(module.body), module, [], None)

    def _build(self, body: Block, node: cst.CSTNode, params: List[str], outer: Optional[Scope]) -> None:
        scope = Scope(node, list(body), params, self, outer)
        self.scopes.append(scope)
        for stmt, calls in scope.later_calls.items():
            for later in calls:
                self.scope_of[later.node] = scope
                self.statement_of[later.node] = stmt
        module_scope = outer if outer is not None else scope
        for nested in scope.nested_scopes:
            if self.only is not None and nested not in self.only:
                continue
            if isinstance(nested, cst.FunctionDef):
                self._build(block_statements(nested.body), nested, param_names(nested), module_scope)
            elif isinstance(nested, cst.ClassDef):
                self._build(block_statements(nested.body), nested, [], module_scope)

    def later_of(self, call: cst.Call) -> Optional[Later]:
        """The call as a backward-like call (a backward, a configured helper, a helper here)."""
        found = backward_call(call, self.imports)
        if found is not None:
            return Later(call, found.tensor if not unknown_arguments(call) else None, backward=found)
        name = dotted(call.func)
        if name is None:
            return None
        last = name.split(".")[-1]
        configured = any(name == f or last == f.split(".")[-1] for f in self.backward_functions)
        if configured or last in self.helpers:
            roots: Set[str] = set()
            for arg in call.args:
                roots |= self.reads.reads(arg.value).keys
            return Later(call, None, roots=roots)
        return None

    # -- the question GL002 asks ------------------------------------------------------------------
    def unnecessary_retains(self) -> List[Verdict]:
        verdicts = []
        for call, scope in self.scope_of.items():
            later = next(c for c in scope.later_calls[self.statement_of[call]] if c.node is call)
            backward = later.backward
            if backward is None:
                continue
            arg = _retain_argument(backward)
            if arg is None:
                continue
            if backward.tensor is not None and self._retain_unneeded(backward, scope, self.statement_of[call]):
                verdicts.append(Verdict(backward, arg, _short(self.module.code_for_node(backward.tensor))))
        return verdicts

    def _retain_unneeded(self, backward: BackwardCall, scope: Scope, stmt: cst.CSTNode) -> bool:
        if backward.tensor is None or unknown_arguments(backward.node):
            return False
        if backward.create_graph is not None and not is_false(backward.create_graph):
            return False
        if not is_true(backward.retain_graph):
            return False
        tensor = backward.tensor
        if self._held_elsewhere(tensor, scope):
            return False
        roots = self.reads.reads(tensor)
        root_keys = set(roots.keys)
        graph = scope.linked(scope.closure(root_keys))
        group = scope.descendants(graph)
        if self._escapes(backward, scope, stmt, group):
            return False
        later_statements = scope.later_statements(stmt)
        candidates = scope.calls_within(later_statements)
        candidates += [c for c in scope.later_calls.get(stmt, ()) if c.node is not backward.node]
        if candidates:
            flow = scope.reaching()
            retained = flow.linked_closure(backward.node)
            if retained is None:
                return False
            for later in candidates:
                reached = flow.linked_closure(later.node)
                if reached is None or reached & retained:
                    return False
        loops = scope.loops_around(stmt)
        if loops:
            # A value of this iteration's graph that lives on into the next one matters when some
            # backward that can still run (in the loop or after it) starts from something reading it.
            reachable: Set[str] = set()
            for later in scope.calls_within(block_statements(loops[-1].body)) + candidates:
                deps = self._deps(later, scope)
                if deps is None:
                    return False  # a backward whose root we cannot read
                reachable |= deps
            for loop in loops:
                carried = scope.carried(loop) & group & reachable
                if carried - scope.reset_after(stmt, loop, group):
                    return False
        return True

    def _held_elsewhere(self, tensor: cst.BaseExpression, scope: Scope) -> bool:
        """A root the function did not compute (a parameter, an attribute, a loop's element)."""
        base = tensor
        while isinstance(base, cst.Subscript):
            base = base.value
        if not isinstance(base, (cst.Name, cst.Attribute)):
            return False
        key = key_of(base)
        if key is None:
            return True
        if key not in scope.defs:
            return True
        return any(d.loop_target is not None for d in scope.defs[key])

    def _deps(self, later: Later, scope: Scope) -> Optional[Set[str]]:
        if later.tensor is None:
            if later.roots is None:
                return None
            return scope.closure(later.roots)
        return scope.closure(self.reads.reads(later.tensor).keys)

    def _may_traverse(self, later: Later, scope: Scope, graph: Set[str]) -> bool:
        deps = self._deps(later, scope)
        if deps is None:
            return True
        return bool(scope.linked(deps) & graph)

    def _escapes(self, backward: BackwardCall, scope: Scope, stmt: cst.CSTNode, group: Set[str]) -> bool:
        after = scope.statements_within(scope.later_statements(stmt))
        for loop in scope.loops_around(stmt):
            after |= scope.statements_within(block_statements(loop.body))
        lightning_manual = (
            backward.kind == "manual"
            and isinstance(scope.node, cst.FunctionDef)
            and scope.node.name.value == "training_step"
        )
        for escape in scope.escapes:
            if not escape.reads & group:
                continue
            if escape.kind == "return" and lightning_manual:
                continue  # Lightning does not run backward on what a manual training_step returns
            if escape.kind == "call" and escape.statement not in after:
                continue
            if escape.kind == "container" and self._local_container(escape.container, scope):
                continue  # a local list: followed by def-use like any other value holding the graph
            return True
        return False

    @staticmethod
    def _local_container(name: Optional[str], scope: Scope) -> bool:
        if name is None or "." in name or name in scope.params or name not in scope.defs:
            return False
        declared = {n for e in scope.escapes if e.kind == "global" for n in e.reads}
        return name not in declared and isinstance(scope.node, (cst.FunctionDef, cst.Module))




def _retain_argument(backward: BackwardCall) -> Optional[cst.Arg]:
    for arg in backward.node.args:
        if arg.value is backward.retain_graph and backward.retain_graph is not None:
            return arg
    return None


def _short(code: str, limit: int = 40) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."


def _retaining_scopes(module: cst.Module, imports: ImportMap) -> Optional[Set[cst.CSTNode]]:
    """The functions and classes holding (at any depth) a backward call whose retain_graph is
    the literal True (keyword or positional); None when the module has no such call. Only such
    a call can be a verdict (`_retain_unneeded`), so only these scopes need building -- most
    modules with a backward never retain, and most functions of those that do hold no retain."""
    holders: Set[cst.CSTNode] = set()
    found = False
    stack: List[Tuple[cst.CSTNode, Tuple[cst.CSTNode, ...]]] = [(module, ())]
    while stack:
        node, around = stack.pop()
        kind = type(node)
        if isinstance(node, cst.Call):
            backward = backward_call(node, imports)
            if backward is not None and is_true(backward.retain_graph):
                found = True
                holders.update(around)
        elif kind is cst.FunctionDef or kind is cst.ClassDef:
            around = around + (node,)
        stack.extend((child, around) for child in children(node))
    return holders if found else None


def unnecessary_retains(module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...] = ()):
    """Every `retain_graph=True` in the module that no later backward can need."""
    from gradlint.analysis.scalars import _ASSIGNED

    try:
        holders = _retaining_scopes(module, imports)
        if holders is None:
            return []
        return GraphAnalysis(module, imports, backward_functions, holders).unnecessary_retains()
    finally:
        _ASSIGNED.clear()  # keep no tree alive after the file is done
