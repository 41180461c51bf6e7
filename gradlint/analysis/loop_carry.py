"""What a loop walks and what its body carries from one iteration into the next.

GL002 may only call a `retain_graph=True` inside a loop unnecessary when the next iteration cannot
reach this iteration's graph: a name the body reads before assigning it (a hidden state carried
without `.detach()`, features computed before the loop, the elements of a list of losses) carries
the graph onward. `LoopCarry` answers that for one scope.
"""

from __future__ import annotations

from typing import Dict, Optional, Set

import libcst as cst

from gradlint.analysis.defuse import (
    TRY_TYPES,
    Block,
    Loop,
    ScopeView,
    calls_outside_nested,
    iterated_calls,
)
from gradlint.analysis.reads import GRAPH, INERT, LEAF, Reads, key_of, names_in, target_keys
from gradlint.analysis.tree import block_statements


class LoopCarry:
    """Loop questions about one scope, computed on demand and remembered per loop."""

    def __init__(self, scope: ScopeView) -> None:
        self.scope = scope
        self._carried: Dict[cst.CSTNode, Set[str]] = {}

    def _collection_of_tensors(self, loop: cst.For) -> bool:
        """Does `for x in <iter>` walk tensors built in this function (`for loss in losses`)?"""
        return bool(self.collection_keys(loop))

    def collection_keys(self, loop: cst.For) -> Set[str]:
        keys = set()
        iterable = loop.iter
        reads = self.scope.analysis.reads.reads(iterable)
        if isinstance(iterable, (cst.List, cst.Tuple)):
            if any(self.scope.class_or_graph(k) != INERT for k in reads.keys):
                keys |= {k for k in reads.keys if k in self.scope.defs or k in self.scope.params}
                return keys or {"<display>"}
        for key in reads.keys:
            if self.scope.persistent(key):
                keys.add(key)  # a buffer the file fills with values with history
                continue
            if key in self.scope.container_collections:
                keys.add(key)
                continue
            for definition in self.scope.defs.get(key, ()):
                value = getattr(definition.node, "value", None)
                if isinstance(value, (cst.List, cst.Tuple, cst.ListComp)) and any(
                    self.scope.class_or_graph(k) != INERT for k in definition.reads.keys
                ):
                    keys.add(key)
        if not isinstance(iterable, (cst.List, cst.Tuple)):
            keys |= self._graph_sources(iterable, reads)
        return keys

    def _graph_sources(self, iterable: cst.BaseExpression, reads: Reads) -> Set[str]:
        """Graph values computed here before the loop that the iterable walks (`for out in outs`,
        `pytree.tree_leaves(outs)`, `enumerate(outs)`, `outs.items()` after `outs = model(x)`), or
        `{"<display>"}` when it calls a module itself (`for o in model(x)`): every element then
        shares one graph. Parameters, globals and library objects (`DataLoader(ds)`) stay data."""
        keys = {
            k for k in reads.keys | reads.receivers
            if k in self.scope.defs and k not in self.scope.objects and self.scope.class_or_graph(k) == GRAPH
            and not self.scope.library_object(k) and self._built_here(k, set())
        }
        if not keys and any(self._module_variable(c.func) for c in iterated_calls(iterable)):
            keys.add("<display>")
        return keys

    def _built_here(self, key: str, seen: Set[str]) -> bool:
        """Does `key` hold a graph this function built (a module or unknown call, a leaf's use),
        not just a value computed from parameters (`batches = batchify(train_data)`: data)?"""
        if key in seen:
            return False
        seen.add(key)
        for definition in self.scope.defs.get(key, ()):
            if definition.loop_target is not None or self.scope.inert_definition(definition):
                continue
            reads = definition.reads
            if reads.opaque or reads.kind == LEAF or reads.object_args & self.scope.objects:
                return True
            if any(self.scope.is_instance(c) for c in reads.ctors):
                return True
            for source in reads.keys | reads.receivers:
                if source not in self.scope.defs or self.scope.class_or_graph(source) == INERT:
                    continue
                if self._built_here(source, seen):
                    return True
        return False

    def _module_variable(self, func: cst.BaseExpression) -> bool:
        """Is the callee a variable (a parameter or an assigned name), hence a module instance
        rather than a function or class of the file or an import (`batches(data)`, `tqdm(loader)`)?"""
        if not isinstance(func, cst.Name):
            return False
        scope: Optional[ScopeView] = self.scope
        while scope is not None:
            if func.value in scope.params:
                return True
            definitions = scope.defs.get(func.value)
            if definitions:
                return all(isinstance(d.node, (cst.Assign, cst.AnnAssign)) for d in definitions)
            scope = scope.outer
        return False


    def carried(self, loop: Loop) -> Set[str]:
        """Names the loop body reads before assigning them, that may hold a graph."""
        if loop not in self._carried:
            self._carried[loop] = self._compute_carried(loop)
        return self._carried[loop]

    def _compute_carried(self, loop: Loop) -> Set[str]:
        reads = self.scope.analysis.reads
        carried: Set[str] = set()
        assigned: Set[str] = set()
        if isinstance(loop, cst.For):
            assigned |= set(target_keys(loop.target))
            collection = self.collection_keys(loop)
            carried |= collection - {"<display>"}
            if collection:
                carried |= set(target_keys(loop.target))  # the next element shares this one's graph
        else:
            carried |= reads.reads(loop.test).keys
        self._carried_block(block_statements(loop.body), assigned, carried)
        return {k for k in self.scope.linked(carried)}

    def _carried_block(self, block: Block, assigned: Set[str], carried: Set[str]) -> Set[str]:
        for stmt in block:
            assigned = self._carried_statement(stmt, assigned, carried)
        return assigned

    def _read(self, expr: Optional[cst.BaseExpression], assigned: Set[str], carried: Set[str]) -> None:
        if expr is None:
            return
        keys = set(self.scope.analysis.reads.reads(expr).keys)
        for call in calls_outside_nested(expr):
            later = self.scope.analysis.later_of(call)  # a backward reads the graph of its root
            if later is not None:
                keys |= self.scope.analysis.reads.reads(later.tensor).keys if later.tensor is not None else set()
                keys |= later.roots or set()
        for key in keys:
            head = key if key.startswith("self.") else key.split(".")[0]
            if key not in assigned and head not in assigned:
                carried.add(key)  # `outputs.loss` is fresh once `outputs` is

    def _carried_statement(self, stmt: cst.CSTNode, assigned: Set[str], carried: Set[str]) -> Set[str]:
        if isinstance(stmt, (cst.SimpleStatementLine,)):
            for small in stmt.body:
                assigned = self._carried_small(small, assigned, carried) | self._refreshed(small)
            return assigned
        if isinstance(stmt, cst.BaseSmallStatement):
            return self._carried_small(stmt, assigned, carried)
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            return assigned | {stmt.name.value}
        if isinstance(stmt, cst.If):
            self._read(stmt.test, assigned, carried)
            body = self._carried_block(block_statements(stmt.body), set(assigned), carried)
            if isinstance(stmt.orelse, cst.If):
                other = self._carried_statement(stmt.orelse, set(assigned), carried)
            elif stmt.orelse is not None:
                other = self._carried_block(block_statements(stmt.orelse.body), set(assigned), carried)
            else:
                other = assigned
            return assigned | (body & other)
        if isinstance(stmt, cst.For):
            self._read(stmt.iter, assigned, carried)
            inner = set(assigned) | set(target_keys(stmt.target))
            self._carried_block(block_statements(stmt.body), inner, carried)
            if stmt.orelse is not None:
                self._carried_block(block_statements(stmt.orelse.body), set(assigned), carried)
            return assigned
        if isinstance(stmt, cst.While):
            self._read(stmt.test, assigned, carried)
            self._carried_block(block_statements(stmt.body), set(assigned), carried)
            return assigned
        if isinstance(stmt, cst.With):
            for item in stmt.items:
                self._read(item.item, assigned, carried)
                if item.asname is not None:
                    assigned = assigned | set(target_keys(item.asname.name))
            return self._carried_block(block_statements(stmt.body), assigned, carried)
        if isinstance(stmt, TRY_TYPES):
            after = self._carried_block(block_statements(stmt.body), set(assigned), carried)
            ends = [after]
            for handler in stmt.handlers:
                ends.append(self._carried_block(block_statements(handler.body), set(assigned), carried))
            if stmt.orelse is not None:
                ends[0] = self._carried_block(block_statements(stmt.orelse.body), ends[0], carried)
            merged = set.intersection(*ends) if ends else assigned
            if stmt.finalbody is not None:
                merged = self._carried_block(block_statements(stmt.finalbody.body), merged, carried)
            return merged
        # Unknown statement kinds: every name in them is read before anything is assigned.
        carried |= {n for n in names_in(stmt) if n not in assigned}
        return assigned

    def _carried_small(self, small: cst.BaseSmallStatement, assigned: Set[str], carried: Set[str]) -> Set[str]:
        if isinstance(small, cst.Assign):
            self._read(small.value, assigned, carried)
            for target in small.targets:
                self._read_target_bases(target.target, assigned, carried)
            new = set()
            for target in small.targets:
                new |= set(target_keys(target.target))
            return assigned | new
        if isinstance(small, cst.AnnAssign):
            self._read(small.value, assigned, carried)
            return assigned | (set(target_keys(small.target)) if small.value is not None else set())
        if isinstance(small, cst.AugAssign):
            self._read(small.value, assigned, carried)
            keys = set(target_keys(small.target))
            carried |= {k for k in keys if k not in assigned}
            return assigned | keys
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
            call = small.value
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value == "detach_":
                key = key_of(func.value)
                return assigned | ({key} if key else set())
        if isinstance(small, (cst.Global, cst.Nonlocal, cst.Import, cst.ImportFrom, cst.Pass, cst.Break, cst.Continue)):
            return assigned
        if isinstance(small, cst.Del):
            return assigned
        value = getattr(small, "value", None)
        if isinstance(value, cst.BaseExpression):
            self._read(value, assigned, carried)
        return assigned

    def _refreshed(self, small: cst.BaseSmallStatement) -> Set[str]:
        """`self.x` attributes a call of `self`'s forward in the statement sets afresh."""
        refreshing = self.scope.refreshing
        if not refreshing:
            return set()
        out: Set[str] = set()
        for call in calls_outside_nested(small):
            out |= refreshing.get(call, frozenset())
        return out

    def _read_target_bases(self, target: cst.BaseExpression, assigned: Set[str], carried: Set[str]) -> None:
        """`x[i] = v` updates x in place: a later read of x sees the old value plus v."""
        if isinstance(target, cst.Subscript):
            key = key_of(target.value)
            if key is not None and key not in assigned:
                carried.add(key)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._read_target_bases(element.value, assigned, carried)
