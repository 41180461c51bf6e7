"""Entries of a container a call returns: which entry a store keeps, and whether it holds a graph.

A Lightning-style step hands back a dict: `out = module.training_step(batch, i)`, the loop runs
`out["loss"].backward()` and logs `history.append(out["log"]["train_loss"])`. The two share the
definition of `out`, but they read *different entries* of it, and the logged entry is usually a
number or a detached copy (`{"loss": loss, "log": {"train_loss": loss.detach()}}`). Like the tuple a
call returns (`loss, stats = step(batch)`), such a container does not link the store to the
backward by itself. `different_entries` says when a shared definition is only such a container:
both sides read it through constant subscripts (`out["loss"]`, `out["log"]["x"]`, `out[1]`) and no
path of one is a prefix of a path of the other. The entry is then read in the callee when the
callee is a function or method of this module whose every `return` is a dict/tuple/list display
holding the path: the store keeps a graph only when the stored entry reads a name (followed through
the callee's assignments) that the walked entry reads too. Where that cannot be told (the callee is
unknown, a return is not a display), the container does not count: precision first.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set, Tuple, Union

import libcst as cst

from gradlint.analysis.defuse import Definition
from gradlint.analysis.helpers import assigned_targets, own_nodes
from gradlint.analysis.reads import INERT, ReadCollector
from gradlint.analysis.tree import children, typed

Key = Union[str, int]
Path = Tuple[Key, ...]


def different_entries(
    module: cst.Module,
    reads: ReadCollector,
    scope_node: cst.CSTNode,
    shared: Definition,
    stored: Tuple[cst.BaseExpression, Iterable[Definition]],
    walked: Tuple[Optional[cst.BaseExpression], Iterable[Definition]],
) -> bool:
    """Is `shared` (a definition both the stored value and a backward's root read) a container
    whose entries the two sides read apart, with the stored entry holding no graph of the walked
    one (or no way to tell)? `stored` and `walked`: each side's expression and the definitions
    that feed it."""
    base = shared.key
    node = shared.node
    if "." in base or base.startswith("<") or base in shared.reads.keys:
        return False
    value = getattr(node, "value", None)
    if not isinstance(node, (cst.Assign, cst.AnnAssign)) or not isinstance(value, cst.Call):
        return False
    if _entries_stored_into(scope_node, base):
        return False  # `out["extra"] = loss` puts more in than the call returned
    stored_paths = _side_paths(reads, base, *stored)
    walked_paths = _side_paths(reads, base, *walked)
    if not stored_paths or not walked_paths:
        return False  # a side reads the container whole (or not through this definition)
    if any(_related(a, b) for a in stored_paths for b in walked_paths):
        return False
    kept = _returned_entries(module, value, stored_paths)
    used = _returned_entries(module, value, walked_paths)
    if kept is None or used is None:
        return True  # cannot tell what the entries hold: stay silent
    return not any(_linked(reads, fn, kept[fn], used.get(fn, [])) for fn in kept)


def entry_paths(expr: cst.CSTNode, base: str) -> Optional[Set[Path]]:
    """The constant subscript paths (`out["log"]["x"]` -> ("log", "x")) through which `expr`
    reads the variable `base`, or None when it also reads it otherwise (bare, an attribute, a
    computed index: any entry may flow then)."""
    found: Set[Path] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Name):
            if node.value == base:
                return None
            continue
        if isinstance(node, cst.Attribute):
            stack.append(node.value)  # not the attribute's own name
            continue
        if isinstance(node, cst.Arg):
            stack.append(node.value)  # not the keyword's name
            continue
        if isinstance(node, cst.Subscript):
            path, inner = _constant_path(node)
            if isinstance(inner, cst.Name) and inner.value == base and path:
                found.add(path)
                for element in _subscripts_of(node):
                    stack.extend(children(element))  # indices may read `base` too
                continue
        stack.extend(children(node))
    return found


def _side_paths(
    reads: ReadCollector, base: str, expr: Optional[cst.BaseExpression], definitions: Iterable[Definition]
) -> Optional[Set[Path]]:
    """Paths through which one side (its expression, the definitions feeding it) reads `base`."""
    nodes: List[cst.CSTNode] = []
    if expr is not None and base in reads.reads(expr).keys:
        nodes.append(expr)
    for definition in definitions:
        if base not in definition.reads.keys:
            continue
        value = getattr(definition.node, "value", None)
        if not isinstance(definition.node, (cst.Assign, cst.AnnAssign, cst.AugAssign)) or value is None:
            return None  # a loop target, a `with ... as`, an unpacking: read whole
        nodes.append(value)
    out: Set[Path] = set()
    for node in nodes:
        paths = entry_paths(node, base)
        if paths is None:
            return None
        out |= paths
    return out or None


def _constant_path(node: cst.Subscript) -> Tuple[Path, cst.BaseExpression]:
    """(constant keys from the innermost value outwards, the innermost value). The path stops at
    the first key that is not a constant string or integer (`out["h"][i]` -> ("h",))."""
    keys: List[Optional[Key]] = []
    current: cst.BaseExpression = node
    while isinstance(current, cst.Subscript):
        keys.append(_constant_key(current))
        current = current.value
    path: List[Key] = []
    for key in reversed(keys):
        if key is None:
            break
        path.append(key)
    return tuple(path), current


def _subscripts_of(node: cst.Subscript) -> List[cst.CSTNode]:
    out: List[cst.CSTNode] = []
    current: cst.BaseExpression = node
    while isinstance(current, cst.Subscript):
        out.extend(current.slice)
        current = current.value
    return out


def _constant_key(node: cst.Subscript) -> Optional[Key]:
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
        return None
    return _constant(node.slice[0].slice.value)


def _constant(expr: cst.BaseExpression) -> Optional[Key]:
    if isinstance(expr, cst.SimpleString):
        value = expr.evaluated_value
        return value if isinstance(value, str) else None
    if isinstance(expr, cst.Integer):
        return int(expr.evaluated_value)
    return None


def _related(a: Path, b: Path) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def _entries_stored_into(scope_node: cst.CSTNode, base: str) -> bool:
    for node in typed(scope_node, cst.Assign, cst.AugAssign, cst.AnnAssign):
        for target in assigned_targets(node):
            inner: cst.BaseExpression = target
            while isinstance(inner, cst.Subscript):
                inner = inner.value
            if inner is not target and isinstance(inner, cst.Name) and inner.value == base:
                return True
    return False


def _returned_entries(
    module: cst.Module, call: cst.Call, paths: Set[Path]
) -> Optional[Dict[cst.FunctionDef, List[cst.BaseExpression]]]:
    """For each function or method of this module the call may run, the expressions its returns
    put at `paths`; None when there is none, or one return does not show what is there."""
    candidates = _callees(module, call.func)
    if not candidates:
        return None
    out: Dict[cst.FunctionDef, List[cst.BaseExpression]] = {}
    for fn in candidates:
        returns = [n for n in own_nodes(fn) if isinstance(n, cst.Return)]
        if not returns:
            return None
        found: List[cst.BaseExpression] = []
        for ret in returns:
            if ret.value is None:
                return None
            for path in paths:
                entry = _entry(ret.value, path)
                if entry is None:
                    return None
                found.append(entry)
        out[fn] = found
    return out


def _callees(module: cst.Module, func: cst.BaseExpression) -> List[cst.FunctionDef]:
    """`module.training_step(...)`: every method of that name in the file's classes;
    `step(...)`: the module-level function of that name."""
    if isinstance(func, cst.Attribute):
        name = func.attr.value
        return [
            item
            for cls in module.body if isinstance(cls, cst.ClassDef)
            for item in cls.body.body if isinstance(item, cst.FunctionDef) and item.name.value == name
        ]
    if isinstance(func, cst.Name):
        return [fn for fn in module.body if isinstance(fn, cst.FunctionDef) and fn.name.value == func.value]
    return []


def _entry(expr: cst.BaseExpression, path: Path) -> Optional[cst.BaseExpression]:
    """The expression a display puts at `path` (`{"log": {"x": v}}`, ("log", "x") -> v)."""
    for key in path:
        if isinstance(expr, cst.Dict) and isinstance(key, str):
            matches = []
            for element in expr.elements:
                if not isinstance(element, cst.DictElement):
                    return None  # `**extra`: may hold the key
                if _constant(element.key) == key:
                    matches.append(element.value)
            if len(matches) != 1:
                return None
            expr = matches[0]
        elif isinstance(expr, (cst.Tuple, cst.List)) and isinstance(key, int):
            count = len(expr.elements)
            if any(isinstance(e, cst.StarredElement) for e in expr.elements) or not -count <= key < count:
                return None
            expr = expr.elements[key].value
        else:
            return None
    return expr


def _linked(
    reads: ReadCollector, fn: cst.FunctionDef, kept: List[cst.BaseExpression], used: List[cst.BaseExpression]
) -> bool:
    """Does an entry the store keeps read (through `fn`'s assignments) a name a walked entry reads?"""
    kept = [e for e in kept if reads.reads(e).kind != INERT]
    if not kept:
        return False  # `loss.detach()`, `loss.item()`, a constant: no graph in it
    sources = _assigned_values(fn)
    return bool(_feeding(reads, kept, sources) & _feeding(reads, used, sources))


def _assigned_values(fn: cst.FunctionDef) -> Dict[str, List[cst.BaseExpression]]:
    """Name -> the values `fn`'s own assignments give it."""
    out: Dict[str, List[cst.BaseExpression]] = {}
    for node in own_nodes(fn):
        if isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign)) and node.value is not None:
            for target in assigned_targets(node):
                for name in typed(target, cst.Name):
                    out.setdefault(name.value, []).append(node.value)  # type: ignore[attr-defined]
    return out


def _feeding(
    reads: ReadCollector, exprs: List[cst.BaseExpression], sources: Dict[str, List[cst.BaseExpression]]
) -> Set[str]:
    """Names the expressions read, followed through the assignments of their function (values
    that read no history stop the walk)."""
    seen: Set[str] = set()
    todo = [k for e in exprs if reads.reads(e).kind != INERT for k in reads.reads(e).keys]
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        for value in sources.get(key.split(".")[0], ()):
            found = reads.reads(value)
            if found.kind != INERT:
                todo.extend(found.keys)
    return seen
