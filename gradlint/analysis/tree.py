"""Fast read-only walks over LibCST trees.

`node.visit(visitor)` rebuilds every node it passes (LibCST visitors may replace children), which
made whole-file fact gathering cost seconds on large files. These helpers only read: they follow
the dataclass fields of each node, skip whitespace and punctuation, and never allocate nodes.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, List, Optional, Tuple, Type

import libcst as cst

# Fields that only hold whitespace, comments or punctuation: never worth walking into.
_SKIPPED = frozenset(
    "lpar rpar comma dot semicolon equal colon leading_lines lines_after_decorators header footer "
    "newline trailing_whitespace whitespace_before_colon whitespace_after_colon asynchronous "
    "whitespace_after_star whitespace_after_arg whitespace_after_func whitespace_before_args "
    "whitespace_before_equal whitespace_after_equal whitespace_before whitespace_after "
    "whitespace_after_def whitespace_after_class whitespace_before_colon whitespace_after_await "
    "whitespace_after_lambda whitespace_before_params whitespace_after_if whitespace_after_for "
    "whitespace_before_in whitespace_after_in whitespace_before_if whitespace_before_else "
    "whitespace_after_else whitespace_after_with whitespace_after_import whitespace_after_from "
    "whitespace_before_import whitespace_after_return whitespace_after_del whitespace_after_global "
    "whitespace_after_nonlocal whitespace_after_assert whitespace_after_raise whitespace_after_except "
    "whitespace_after_yield whitespace_before_from whitespace_after_match whitespace_after_case "
    "whitespace_after_at whitespace_after_indicator".split()
)

_FIELDS: Dict[Type[cst.CSTNode], Tuple[str, ...]] = {}


def _fields(node: cst.CSTNode) -> Tuple[str, ...]:
    kind = type(node)
    names = _FIELDS.get(kind)
    if names is None:
        names = tuple(
            f.name
            for f in dataclasses.fields(node)  # type: ignore[arg-type]
            if f.name not in _SKIPPED and not f.name.startswith("whitespace")
        )
        _FIELDS[kind] = names
    return names


# Per value type: 1 a node, 2 a list or tuple (of nodes or not), 0 anything else.
_KIND: Dict[type, int] = {list: 2, tuple: 2, type(None): 0, str: 0}


def _kind(kind: type) -> int:
    known = _KIND.get(kind)
    if known is None:
        known = _KIND[kind] = 1 if issubclass(kind, cst.CSTNode) else 0
    return known


def _is_node(value: object) -> bool:
    return _kind(type(value)) == 1


def children(node: cst.CSTNode) -> List[cst.CSTNode]:
    """Child nodes in source order (whitespace and punctuation left out), as a new list.
    (Hot: every walk of every analysis goes through here, so it avoids generators and keeps the
    per-type facts in dicts.)"""
    names = _FIELDS.get(type(node))
    if names is None:
        names = _fields(node)
    out: List[cst.CSTNode] = []
    kinds = _KIND
    for name in names:
        value = getattr(node, name, None)
        kind = kinds.get(type(value))
        if kind is None:
            kind = _kind(type(value))
        if kind == 1:
            out.append(value)  # type: ignore[arg-type]
        elif kind == 2:
            for item in value:  # type: ignore[union-attr]
                item_kind = kinds.get(type(item))
                if item_kind is None:
                    item_kind = _kind(type(item))
                if item_kind == 1:
                    out.append(item)
    return out


class _Preorder:
    """One tree's nodes in walk order, with where each node's subtree ends: a walk of any node of
    the tree is then a slice of one list instead of a fresh traversal."""

    __slots__ = ("order", "ends", "at", "typed")

    def __init__(self, root: cst.CSTNode) -> None:
        order: List[cst.CSTNode] = []
        ends: List[int] = []
        at: Dict[int, int] = {}
        stack: list = [root]
        pop = stack.pop
        append = stack.append
        extend = stack.extend
        while stack:
            current = pop()
            if type(current) is int:  # the marker pushed below: this node's subtree is complete
                ends[current] = len(order)
                continue
            index = len(order)
            order.append(current)
            ends.append(0)
            at[id(current)] = index
            append(index)
            below = children(current)
            if below:
                below.reverse()
                extend(below)
        self.order = order
        self.ends = ends
        self.at = at  # id(node) -> its index (the tree holds every node, so ids stay unique)
        self.typed: Dict[frozenset, List[cst.CSTNode]] = {}  # `typed` answers for the whole tree


# The indexed trees, newest last: whole-module walks index their module, so the dozens of later
# walks over it and its parts cost a slice each. Bounded (a few modules: the analysed file and
# project files read for it); `forget_trees` drops them when a file's analysis ends.
_TREES: List[_Preorder] = []
_MAX_TREES = 4


def forget_trees() -> None:
    """Drop every tree index (and with it the trees it keeps alive)."""
    _TREES.clear()


def _indexed(node: cst.CSTNode) -> Optional[Tuple[_Preorder, int]]:
    key = id(node)
    for tree in reversed(_TREES):
        index = tree.at.get(key)
        if index is not None and tree.order[index] is node:
            return tree, index
    if type(node) is cst.Module:
        tree = _Preorder(node)
        _TREES.append(tree)
        if len(_TREES) > _MAX_TREES:
            del _TREES[0]
        return tree, 0
    return None


def walk(node: cst.CSTNode, stop: Tuple[type, ...] = ()) -> Iterator[cst.CSTNode]:
    """`node` and its descendants, pre-order; nodes of a `stop` type (other than `node` itself)
    are yielded but not entered. (LibCST node classes are final, so types are compared exactly.)
    A node of an indexed tree (see `_Preorder`) is walked off the index, in the same order."""
    found = _indexed(node)
    if found is None:
        return _walk_fresh(node, stop)
    tree, start = found
    end = tree.ends[start]
    if not stop:
        return iter(tree.order[start:end])
    return _walk_indexed(tree, start, end, frozenset(stop))


def preorder(module: cst.Module) -> Tuple[List[cst.CSTNode], List[int], Dict[int, int]]:
    """The module's nodes in walk order, where each node's subtree ends (an index into the same
    list) and id(node) -> its index: for one linear pass that needs the enclosing definitions of
    a node (those whose subtree range holds its index) without a traversal of its own."""
    found = _indexed(module)
    assert found is not None  # a module is always indexed
    tree = found[0]
    return tree.order, tree.ends, tree.at


def typed(node: cst.CSTNode, *kinds: type) -> List[cst.CSTNode]:
    """The nodes of exactly these types among `node` and its descendants, in walk order. For a
    whole indexed module the answer is kept with its index (the analyses ask the same questions
    of a module over and over: its functions, its classes, its calls); exact type tests, because
    LibCST's node classes are final and `isinstance` on them goes through ABCMeta."""
    wanted = frozenset(kinds)
    found = _indexed(node)
    if found is None:
        return [n for n in _walk_fresh(node, ()) if type(n) in wanted]
    tree, start = found
    if start == 0:
        known = tree.typed.get(wanted)
        if known is None:
            known = tree.typed[wanted] = [n for n in tree.order if type(n) in wanted]
        return known
    return [n for n in tree.order[start:tree.ends[start]] if type(n) in wanted]


def _walk_indexed(tree: _Preorder, start: int, end: int, stop_types: frozenset) -> Iterator[cst.CSTNode]:
    order = tree.order
    ends = tree.ends
    yield order[start]
    index = start + 1
    while index < end:
        current = order[index]
        yield current
        index = ends[index] if type(current) in stop_types else index + 1


def _walk_fresh(node: cst.CSTNode, stop: Tuple[type, ...]) -> Iterator[cst.CSTNode]:
    stop_types = frozenset(stop)
    stack = [node]
    pop = stack.pop
    extend = stack.extend
    while stack:
        current = pop()
        yield current
        if stop_types and current is not node and type(current) in stop_types:
            continue
        below = children(current)
        if below:
            below.reverse()
            extend(below)


def block_statements(suite) -> list:
    """The statements of an indented block or one-line suite (or a list of them, as given)."""
    if isinstance(suite, cst.BaseSuite):
        return list(suite.body)
    return list(suite)


# Nodes that open a scope of their own: the code inside does not run where it is written.
SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)
SUITES = (cst.IndentedBlock, cst.SimpleStatementSuite)
