"""Which names a statement binds, and the scopes of a module (for the shape analysis).

These helpers know nothing about tensors: they answer "what does this assignment, loop or import
bind?", "which functions and classes does this block define?" and "how often is each module-level
name bound?". They live apart from the shape rules so that `analysis.reads` and `analysis.scalars`
can both use them without importing each other.
"""

from __future__ import annotations

from typing import Dict, Iterator, Tuple, Union

import libcst as cst

from gradlint.analysis.names import dotted
from gradlint.analysis.tree import SCOPES, walk


def target_keys(target: cst.BaseExpression) -> Iterator[str]:
    """Names (and `self.x` chains) bound by an assignment target."""
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, cst.Attribute):
        key = dotted(target)
        if key is not None:
            yield key
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from target_keys(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from target_keys(target.value)


_BINDERS = frozenset(
    {
        cst.AssignTarget,
        cst.AugAssign,
        cst.AnnAssign,
        cst.For,
        cst.NamedExpr,
        cst.WithItem,
        cst.FunctionDef,
        cst.ClassDef,
        cst.Import,
        cst.ImportFrom,
        cst.ExceptHandler,
        cst.Global,
        cst.Nonlocal,
        cst.Del,
    }
)


def bound_by(node: cst.CSTNode) -> Iterator[str]:
    """Keys one node binds (an assignment target, a loop target, a def, an import, `global x`...)."""
    if type(node) not in _BINDERS:
        return
    if isinstance(node, (cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.NamedExpr)):
        yield from target_keys(node.target)
    elif isinstance(node, cst.WithItem):
        if node.asname is not None:
            yield from target_keys(node.asname.name)
    elif isinstance(node, (cst.FunctionDef, cst.ClassDef)):
        yield node.name.value
    elif isinstance(node, cst.Import):
        for alias in node.names:
            name = alias.asname.name if alias.asname else alias.name
            key = dotted(name) if isinstance(name, (cst.Name, cst.Attribute)) else None
            if key:
                yield key.split(".")[0]
    elif isinstance(node, cst.ImportFrom):
        if not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                name = alias.asname.name if alias.asname else alias.name
                if isinstance(name, cst.Name):
                    yield name.value
    elif isinstance(node, cst.ExceptHandler):
        if node.name is not None:
            yield from target_keys(node.name.name)
    elif isinstance(node, (cst.Global, cst.Nonlocal)):
        for item in node.names:
            yield item.name.value
    elif isinstance(node, cst.Del):
        yield from target_keys(node.target)


_ASSIGNED: Dict[int, Tuple[cst.CSTNode, frozenset]] = {}


def assigned_keys(node: cst.CSTNode) -> set:
    """Every key assigned anywhere inside a statement or block (not inside nested scopes)."""
    known = _ASSIGNED.get(id(node))
    if known is not None and known[0] is node:
        return set(known[1])
    keys: set = set()
    for current in walk(node, SCOPES):
        if type(current) in _BINDERS:
            keys.update(bound_by(current))
    if len(_ASSIGNED) > 20000:
        _ASSIGNED.clear()  # bounded: entries keep their nodes (and modules) alive
    _ASSIGNED[id(node)] = (node, frozenset(keys))
    return keys


def forget(env: dict, keys) -> dict:
    """Copy of env without `keys`, and without `self.x.y` chains below a forgotten key."""
    out = dict(env)
    for key in keys:
        out.pop(key, None)
        prefix = key + "."
        for other in [k for k in out if k.startswith(prefix)]:
            out.pop(other, None)
    return out


def definitions(body) -> Iterator[Union[cst.FunctionDef, cst.ClassDef]]:
    """Functions and classes defined in a block, including inside if/try/with/loops (not nested defs)."""
    statements = body.body if isinstance(body, cst.BaseSuite) else body
    for stmt in statements:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            yield stmt
        elif isinstance(stmt, cst.BaseCompoundStatement):
            for child in _child_blocks(stmt):
                yield from definitions(child)


def _child_blocks(stmt: cst.BaseCompoundStatement) -> Iterator:
    body = getattr(stmt, "body", None)
    if isinstance(body, cst.BaseSuite):
        yield body
    orelse = getattr(stmt, "orelse", None)
    if isinstance(orelse, cst.If):
        yield [orelse]
    elif orelse is not None and isinstance(getattr(orelse, "body", None), cst.BaseSuite):
        yield orelse.body
    for handler in getattr(stmt, "handlers", ()) or ():
        yield handler.body
    final = getattr(stmt, "finalbody", None)
    if final is not None:
        yield final.body
    for case in getattr(stmt, "cases", ()) or ():
        yield case.body


# Binders counted once (`=`, augmented, annotated, loop targets, defs); the others count twice.
_PLAIN_BINDERS = frozenset({cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.FunctionDef, cst.ClassDef})


def assignment_counts(body) -> Dict[str, int]:
    """How often each module-level name is bound; names bound in other ways than `=` count twice."""
    counts: Dict[str, int] = {}
    for stmt in body:
        for node in walk(stmt, SCOPES):
            kind = type(node)  # exact types: LibCST's node classes are final (isinstance is slower)
            if kind not in _BINDERS:
                continue  # binds nothing (bound_by would yield nothing)
            weight = 1 if kind in _PLAIN_BINDERS else 2
            for key in bound_by(node):
                counts[key] = counts.get(key, 0) + weight
            if kind is cst.For:
                # A name assigned in a loop body is assigned once per iteration.
                for inner in assigned_keys(node.body):  # type: ignore[attr-defined]
                    counts[inner] = counts.get(inner, 0) + 2
    return counts


def statement_counts(body) -> Dict[str, int]:
    """`assignment_counts` read from statements only (no walk into expressions): what a module
    that is only consulted for its definitions needs, at a fraction of the cost."""
    counts: Dict[str, int] = {}

    def add(keys, weight: int) -> None:
        for key in keys:
            counts[key] = counts.get(key, 0) + weight

    def visit(statements, weight: int) -> None:
        for stmt in statements:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.Assign):
                        for target in small.targets:
                            add(target_keys(target.target), weight)
                    elif isinstance(small, (cst.AugAssign, cst.AnnAssign)):
                        add(target_keys(small.target), weight)
                    else:
                        add(bound_by(small), 2)
            elif isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
                add([stmt.name.value], weight)
            elif isinstance(stmt, cst.BaseCompoundStatement):
                inner = weight
                if isinstance(stmt, (cst.For, cst.While)):
                    if isinstance(stmt, cst.For):
                        add(target_keys(stmt.target), 2)
                    inner = 2  # assigned once per iteration
                if isinstance(stmt, cst.With):
                    for item in stmt.items:
                        if item.asname is not None:
                            add(target_keys(item.asname.name), 2)
                for block in _child_blocks(stmt):
                    visit(block.body if isinstance(block, cst.BaseSuite) else block, inner)

    visit(body, 1)
    return counts
