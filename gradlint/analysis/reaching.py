"""Which definitions reach each backward call: the flow-sensitive def-use graph of one scope.

GL002 asks whether a later backward depends on the retained graph; a name reassigned between the
two (`fake = G(z)` regenerated for the generator step) must not link them, so this follows the
statements in order, both arms of an `if`, loops to a fixpoint and `try` handlers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.defuse import TRY_TYPES, Definition, Loop, ScopeView, blocks_of
from gradlint.analysis.reads import GRAPH, INERT, LEAF, UNKNOWN
from gradlint.analysis.tree import block_statements


@dataclass(eq=False, repr=False)
class Reach:
    """One definition as a node of the flow-sensitive def-use graph (or a name from outside)."""

    key: str
    definition: Optional[Definition]
    sources: Set["Reach"] = field(default_factory=set)
    klass: str = INERT


Env = Dict[str, FrozenSet[Reach]]
Probe = Tuple[cst.Call, Set[str]]


class ReachingDefinitions:
    """Which definitions reach each backward call: straight-line order, both arms of an `if`,
    loops to a fixpoint (with `break`/`continue`), `try` handlers from anywhere in the body.

    GL002 asks whether a later backward depends on the retained graph; a name reassigned between
    the two (`fake = G(z)` regenerated for the generator step) must not link them."""

    def __init__(self, scope: ScopeView, probes: Optional[Dict[cst.CSTNode, List[Probe]]] = None) -> None:
        """`probes`: statement -> (call, names) pairs to record like backward calls (a call that
        hands a graph to a function which retains it: its root is what the call passes)."""
        self.scope = scope
        self.probes = probes or {}
        self.reach_of: Dict[Definition, Reach] = {}
        self.outside: Dict[str, Reach] = {}
        self.at_call: Dict[cst.Call, Set[Reach]] = {}
        self._loops: List[Tuple[List[Env], List[Env]]] = []  # (break envs, continue envs)
        self._block(scope.body, {})
        self._classify()

    # -- walking ---------------------------------------------------------------------------
    def _resolve(self, keys: Iterable[str], env: Env) -> Set[Reach]:
        out: Set[Reach] = set()
        for key in keys:
            found = env.get(key)
            if found:
                out |= found
            else:
                out.add(self._outside(key))
        return out

    def _outside(self, key: str) -> Reach:
        if key not in self.outside:
            self.outside[key] = Reach(key, None)
        return self.outside[key]

    def _record_calls(self, stmt: cst.CSTNode, env: Env) -> None:
        reads = self.scope.analysis.reads
        for later in self.scope.later_calls.get(stmt, ()):
            if later.tensor is not None:
                keys = reads.reads(later.tensor).keys
            elif later.roots is not None:
                keys = later.roots
            else:
                continue
            self.at_call.setdefault(later.node, set()).update(self._resolve(keys, env))
        for call, names in self.probes.get(stmt, ()):
            self.at_call.setdefault(call, set()).update(self._resolve(names, env))

    def _bind(self, node: cst.CSTNode, env: Env) -> Env:
        definitions = self.scope.defs_at.get(node, ())
        if not definitions:
            return env
        env = dict(env)
        for definition in definitions:
            reach = self.reach_of.get(definition)
            if reach is None:
                reach = self.reach_of[definition] = Reach(definition.key, definition)
            reach.sources |= self._resolve(definition.reads.keys, env)
            env[definition.key] = frozenset({reach})
        return env

    def _block(self, block, env: Env) -> Env:
        for stmt in block:
            env = self._statement(stmt, env)
        return env

    def _statement(self, stmt: cst.CSTNode, env: Env) -> Env:
        if isinstance(stmt, (cst.SimpleStatementLine, cst.BaseSmallStatement)):
            self._record_calls(stmt, env)
            smalls = stmt.body if isinstance(stmt, cst.SimpleStatementLine) else [stmt]
            for small in smalls:
                if isinstance(small, cst.Break) and self._loops:
                    self._loops[-1][0].append(env)
                elif isinstance(small, cst.Continue) and self._loops:
                    self._loops[-1][1].append(env)
                env = self._bind(small, env)
            return env
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            return self._bind(stmt, env)
        if isinstance(stmt, cst.If):
            self._record_calls(stmt, env)
            body = self._block(block_statements(stmt.body), env)
            if isinstance(stmt.orelse, cst.If):
                other = self._statement(stmt.orelse, env)
            elif stmt.orelse is not None:
                other = self._block(block_statements(stmt.orelse.body), env)
            else:
                other = env
            return union_envs(body, other)
        if isinstance(stmt, (cst.For, cst.While)):
            return self._loop(stmt, env)
        if isinstance(stmt, cst.With):
            self._record_calls(stmt, env)
            return self._block(block_statements(stmt.body), self._bind(stmt, env))
        if isinstance(stmt, TRY_TYPES):
            body = self._block(block_statements(stmt.body), env)
            ends = []
            for handler in stmt.handlers:
                start = self._bind(handler, union_envs(env, body))
                ends.append(self._block(block_statements(handler.body), start))
            if stmt.orelse is not None:
                body = self._block(block_statements(stmt.orelse.body), body)
            ends.append(body)
            merged = ends[0]
            for end in ends[1:]:
                merged = union_envs(merged, end)
            if stmt.finalbody is not None:
                merged = self._block(block_statements(stmt.finalbody.body), union_envs(env, merged))
            return merged
        # match and anything newer: each block from the same start, all ends merged.
        self._record_calls(stmt, env)
        merged = env
        for block in blocks_of(stmt):
            merged = union_envs(merged, self._block(block, env))
        return merged

    def _loop(self, stmt: Loop, env: Env) -> Env:
        head = env
        body_end = env
        breaks: List[Env] = []
        for _ in range(6):  # reaching definitions grow monotonically; loops settle in a few passes
            self._record_calls(stmt, head)
            start = self._bind(stmt, head) if isinstance(stmt, cst.For) else head
            self._loops.append(([], []))
            body_end = self._block(block_statements(stmt.body), start)
            breaks, continues = self._loops.pop()
            new_head = head
            for other in [body_end] + continues:
                new_head = union_envs(new_head, other)
            if new_head == head:
                break
            head = new_head
        after = union_envs(head, body_end)
        if stmt.orelse is not None:
            after = self._block(block_statements(stmt.orelse.body), after)
        for other in breaks:
            after = union_envs(after, other)
        return after

    # -- classes -------------------------------------------------------------------------------
    def _classify(self) -> None:
        scope = self.scope
        reaches = list(self.reach_of.values())
        for reach in self.outside.values():
            reach.klass = scope.class_of(reach.key)
        changed = True
        rounds = 0
        while changed and rounds < 50:
            changed = False
            rounds += 1
            for reach in reaches:
                new = self._reach_class(reach)
                if new != reach.klass:
                    reach.klass = new
                    changed = True

    def _reach_class(self, reach: Reach) -> str:
        scope = self.scope
        definition = reach.definition
        if definition is None:
            return reach.klass
        if reach.key in scope.objects:
            return INERT
        classes = [source.klass for source in reach.sources if source is not reach]
        return scope.definition_class(definition, classes)

    # -- questions -----------------------------------------------------------------------------
    def linked_closure(self, call: cst.Call) -> Optional[Set[Reach]]:
        """Definitions that may hold part of the graph a backward call starts from."""
        start = self.at_call.get(call)
        if start is None:
            return None
        seen: Set[Reach] = set()
        todo = list(start)
        while todo:
            reach = todo.pop()
            if reach in seen:
                continue
            seen.add(reach)
            if reach.klass in (INERT, LEAF):
                continue
            todo.extend(reach.sources)
        return {r for r in seen if r.klass in (GRAPH, UNKNOWN)}


def union_envs(a: Env, b: Env) -> Env:
    """Definitions reaching the join of two paths: those of either."""
    out = dict(a)
    for key, reaches in b.items():
        out[key] = out[key] | reaches if key in out else reaches
    return out
