"""The retained-graph proof for one scope: can any later backward walk the graph a call keeps?

`retain_graph=True` keeps a graph's saved tensors after its backward so that *another* backward can
walk it again. It is unnecessary when no later backward can reach that graph. `GraphAnalysis.unused_after`
proves that for a graph rooted at given names at one statement, or gives up (and the rule stays silent):

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
`reaching` which definitions reach each backward. `graphs` decides which roots to ask about (the
backward's own, a caller's argument, an iteration of a trainer class).
"""

from __future__ import annotations

from typing import Callable, Dict, FrozenSet, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.call_sites import bind_arguments
from gradlint.analysis.backward import BackwardCall, backward_call, unknown_arguments
from gradlint.analysis.defuse import Block, Later
from gradlint.analysis.graph_scope import Scope
from gradlint.analysis.helpers import (
    backward_helpers,
    detaching_functions,
    detaching_instances,
    pure_functions,
    stateful_instances,
    stored_attributes,
    tensor_holders,
)
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.outliving import history_stores, opaque_walker
from gradlint.analysis.reads import BUILTINS, GRAPH, ReadCollector, is_false, is_true, param_names
from gradlint.analysis.reaching import ReachingDefinitions
from gradlint.analysis.tree import COMPREHENSIONS, SCOPES, block_statements, typed, walk


class GraphAnalysis:
    """Scopes of one module and the backward calls in them."""

    def __init__(self, module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...] = (),
                 only: Optional[Set[cst.CSTNode]] = None,
                 walker: Optional[Callable[[cst.Call], bool]] = None,
                 extra_detaching: FrozenSet[str] = frozenset(),
                 not_detaching: FrozenSet[str] = frozenset()) -> None:
        """`only`: build the scopes of just these functions and classes (and the module's); the
        others hold nothing GL002 asks about, and no scope reads another but the module's.
        `walker`: which imported functions may run a backward on what they are given (default:
        every one but torch's and data packages'). `extra_detaching`: imported names of project
        functions known to return values without history; `not_detaching`: names whose calls may
        reach another definition (a method a subclass elsewhere overrides)."""
        self.only = only
        self.may_walk: Callable[[cst.Call], bool] = walker or (lambda call: opaque_walker(call, imports))
        self.module = module
        self.imports = imports
        detaching = detaching_functions(module, imports)
        detaching |= detaching_instances(module, imports, detaching) | frozenset(extra_detaching)
        detaching -= frozenset(not_detaching)
        self.reads = ReadCollector(imports, detaching, pure_functions(module, imports, detaching))
        self.reads.shadowed = shadowed_builtins(module)
        self.reads.stateful = stateful_instances(module, self.reads)
        self.reads.holders = tensor_holders(module, self.reads, imports)
        self.stored_attributes = stored_attributes(module, self.reads)
        # Attributes and globals the file fills with values that may carry history: they outlive
        # each call, so a graph read from one may be walked again by the next call.
        self.store_attributes, self.store_assigned, self.store_globals = history_stores(module, self.reads)
        self.reads.stores = (self.store_attributes | self.store_assigned, self.store_globals)
        self.reads.forget()
        self.backward_functions = tuple(backward_functions)
        self.helpers = backward_helpers(module, imports)
        self.scopes: List[Scope] = []
        self._by_node: Dict[cst.CSTNode, Scope] = {}
        self.scope_of: Dict[cst.Call, Scope] = {}
        self.statement_of: Dict[cst.Call, cst.CSTNode] = {}
        # Calls of this class's backward-running methods with arguments, kept as calls in an
        # inlined iteration: the `self.x` attributes the method reads are roots too.
        self.extra_roots: Dict[cst.Call, Set[str]] = {}
        # Functions of the file by name: (definition, is a method); what their backwards read.
        self._functions: Dict[str, List[Tuple[cst.FunctionDef, bool]]] = {}
        for home, is_method in _function_homes(module):
            for stmt in home:
                if isinstance(stmt, cst.FunctionDef):
                    self._functions.setdefault(stmt.name.value, []).append((stmt, is_method))
        self._feeds: Dict[cst.FunctionDef, Optional[Tuple[Set[str], Set[str]]]] = {}
        self._build(list(module.body), module, [], None)

    def _build(self, body: Block, node: cst.CSTNode, params: List[str], outer: Optional[Scope]) -> None:
        scope = Scope(node, list(body), params, self, outer)
        self.scopes.append(scope)
        self._by_node[node] = scope
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
            narrowed = None if configured else self._helper_roots(call)
            if narrowed is not None:
                return Later(call, None, roots=narrowed)
            roots: Set[str] = set(self.extra_roots.get(call, ()))
            for arg in call.args:
                roots |= self.reads.reads(arg.value).keys
            return Later(call, None, roots=roots)
        return None

    # -- what a helper's backward walks ----------------------------------------------------------
    def _helper_roots(self, call: cst.Call) -> Optional[Set[str]]:
        """Names of the caller a call of a backward-running function of this file hands to its
        backward: the arguments bound to parameters its backward roots read (`backward_D(netD,
        real, fake)` walks `real` but not `fake` when it uses `fake.detach()`), and the `self.x`
        attributes and globals they read. None when the function or the binding is not known."""
        func = call.func
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            name, method = func.attr.value, True
        elif isinstance(func, cst.Name):
            name, method = func.value, False
        else:
            return None
        candidates = self._functions.get(name, [])
        if len(candidates) != 1 or candidates[0][1] != method:
            return None
        fn = candidates[0][0]
        feeding = self._feeding(fn, method)
        if feeding is None:
            return None
        params, others = feeding
        bound = bind_arguments(call, method, fn)
        if bound is None:
            return None
        roots = set(others)
        for param in params:
            argument = bound.get(param)
            if argument is not None:
                roots |= self.reads.reads(argument).keys
        return roots

    def _feeding(self, fn: cst.FunctionDef, method: bool) -> Optional[Tuple[Set[str], Set[str]]]:
        """(parameters, other names) that the backward roots in `fn` read; None when unknown."""
        if fn in self._feeds:
            return self._feeds[fn]
        self._feeds[fn] = None  # while computing (recursion): unknown
        params = param_names(fn)
        outer = self.scopes[0] if self.scopes else None
        scope = Scope(fn, block_statements(fn.body), params, self, outer)
        keys: Set[str] = set()
        for laters in scope.later_calls.values():
            for later in laters:
                if later.tensor is not None:
                    roots = self.reads.reads(later.tensor).keys
                elif later.roots is not None:
                    roots = later.roots
                else:
                    return None
                keys |= scope.closure(roots)
        own = set(params[1:] if method else params)
        found = (keys & own, {k for k in keys if k not in own and k != "self" and k not in scope.defs})
        self._feeds[fn] = found
        return found

    # -- the question GL002 asks ------------------------------------------------------------------
    def retains(self) -> List[Tuple[BackwardCall, Scope, cst.CSTNode]]:
        """Each backward call with `retain_graph=True` in the built scopes: (call, scope, statement)."""
        found = []
        for call, scope in self.scope_of.items():
            stmt = self.statement_of[call]
            later = next(c for c in scope.later_calls[stmt] if c.node is call)
            backward = later.backward
            if backward is None or backward.tensor is None or unknown_arguments(backward.node):
                continue
            if not is_true(backward.retain_graph):
                continue
            if backward.create_graph is not None and not is_false(backward.create_graph):
                continue
            found.append((backward, scope, stmt))
        return found

    def build_scope(self, node: cst.CSTNode, body: Block, params: List[str], outer: Optional[Scope]) -> Scope:
        """A scope for `node` that is not registered as one of the module's (a fresh copy whose
        classes may be seeded, or a synthetic iteration)."""
        return Scope(node, list(body), params, self, outer)

    def module_scope(self) -> Scope:
        return self.scopes[0]

    def scope_of_node(self, node: cst.CSTNode) -> Optional[Scope]:
        return self._by_node.get(node)

    def scope_of_chain(self, chain: Tuple[cst.CSTNode, ...]) -> Scope:
        """The scope of the innermost of `chain` (functions and classes around a call, outermost
        first), building the ones not built yet; the module's scope for an empty chain."""
        scope = self.scopes[0]
        for node in chain:
            found = self._by_node.get(node)
            if found is None and isinstance(node, (cst.FunctionDef, cst.ClassDef)):
                params = param_names(node) if isinstance(node, cst.FunctionDef) else []
                found = Scope(node, block_statements(node.body), params, self, self.scopes[0])
                self.scopes.append(found)
                self._by_node[node] = found
            if found is not None:
                scope = found
        return scope

    def unused_after(
        self,
        scope: Scope,
        stmt: cst.CSTNode,
        node: cst.Call,
        root_keys: Set[str],
        manual: bool = False,
        exempt: FrozenSet[str] = frozenset(),
        probe: bool = False,
        walked_only: bool = False,
    ) -> bool:
        """Is the graph of `root_keys`, kept at `node` (in statement `stmt`), walked by no later
        backward? `probe`: `node` is not a backward but a call handing the graph to a function that
        retains it. `exempt`: `self.x` attributes whose stores do not count as escapes (the caller
        follows them). `manual`: Lightning's manual `training_step`, whose return is not walked.
        `walked_only`: ask only whether a later backward here walks the part of the graph this
        function computed (the next call with the same features, a later round of a loop around the
        call), not whether it leaves the function; values from outside it (parameters, attributes)
        are the caller's to answer for."""
        closure = scope.closure(root_keys)
        if any(scope.persistent(k) for k in closure):
            return False  # read from a store that outlives the call: the next call walks it again
        graph = scope.linked(closure)
        if walked_only:
            graph = {k for k in graph if scope.class_of(k) == GRAPH}
        group = scope.descendants(graph)
        if not walked_only and self._escapes(scope, stmt, group, node, manual, exempt):
            return False
        later_statements = scope.later_statements(stmt)
        candidates = scope.calls_within(later_statements)
        candidates += [c for c in scope.later_calls.get(stmt, ()) if c.node is not node]
        if candidates:
            flow = ReachingDefinitions(scope, {stmt: [(node, set(root_keys))]}) if probe else scope.reaching()
            retained = flow.linked_closure(node)
            if retained is None:
                return False
            if walked_only:
                retained = {r for r in retained if r.klass == GRAPH}
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

    def statement_holding(self, scope: Scope, call: cst.Call) -> Optional[cst.CSTNode]:
        """The simple statement of `scope` a call is part of (not in a nested function or
        comprehension), or None."""
        for stmt in scope.places:
            if isinstance(stmt, cst.SimpleStatementLine) and any(
                n is call for n in walk(stmt, SCOPES + COMPREHENSIONS)
            ):
                return stmt
        return None

    def _deps(self, later: Later, scope: Scope) -> Optional[Set[str]]:
        if later.tensor is None:
            if later.roots is None:
                return None
            return scope.closure(later.roots)
        return scope.closure(self.reads.reads(later.tensor).keys)

    def _escapes(
        self, scope: Scope, stmt: cst.CSTNode, group: Set[str], node: cst.Call, manual: bool, exempt: FrozenSet[str]
    ) -> bool:
        after = scope.statements_within(scope.later_statements(stmt))
        for loop in scope.loops_around(stmt):
            after |= scope.statements_within(block_statements(loop.body))
        for escape in scope.escapes:
            if not escape.reads & group:
                continue
            if escape.kind == "return" and manual:
                continue  # Lightning does not run backward on what a manual training_step returns
            if escape.kind == "call" and (escape.statement not in after or escape.call is node):
                continue
            if escape.kind == "return" and escape.statement not in after and escape.statement is not stmt:
                if _plain_return(escape.statement):
                    continue  # returns before the retain (or instead of it): it did not run then
            if escape.kind == "container" and self._local_container(escape.container, scope):
                continue  # a local list: followed by def-use like any other value holding the graph
            if escape.kind == "store" and escape.targets and escape.targets <= exempt:
                continue  # an attribute the iteration being analysed follows like a variable
            return True
        return False

    @staticmethod
    def _local_container(name: Optional[str], scope: Scope) -> bool:
        if name is None or "." in name or name in scope.params or name not in scope.defs:
            return False
        declared = {n for e in scope.escapes if e.kind == "global" for n in e.reads}
        return name not in declared and isinstance(scope.node, (cst.FunctionDef, cst.Module))


def shadowed_builtins(module: cst.Module) -> FrozenSet[str]:
    """Builtin names the module binds as parameters or variables (`input`, `iter`, `filter`)."""
    bound: Set[str] = set()
    for node in typed(module, cst.Param, cst.AssignTarget, cst.For):
        if type(node) is cst.Param:
            bound.add(node.name.value)
        elif type(node.target) is cst.Name:  # type: ignore[attr-defined]
            bound.add(node.target.value)  # type: ignore[attr-defined]
    return frozenset(bound & BUILTINS)


def _function_homes(module: cst.Module) -> List[Tuple[List[cst.CSTNode], bool]]:
    """The module body (functions) and each class body (methods)."""
    homes: List[Tuple[List[cst.CSTNode], bool]] = [(list(module.body), False)]
    for node in typed(module, cst.ClassDef):
        homes.append((block_statements(node.body), True))  # type: ignore[attr-defined]
    return homes


def _plain_return(stmt: cst.CSTNode) -> bool:
    """A statement line that returns (no `yield`: a generator's consumer keeps what it got)."""
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    if any(isinstance(n, cst.Yield) for n in walk(stmt, SCOPES)):
        return False
    return any(isinstance(small, cst.Return) for small in stmt.body)
