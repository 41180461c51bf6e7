"""Backward calls written beside a traced one that never ran in this execution.

A run sees one path through the code. `retain_graph=True` followed by `if args.aux_weight > 0:
aux.backward()` keeps the graph for that second backward; a run without the option never takes
the branch, so "no later backward ran the retained graph" tells nothing about the code, only about
this run. Such a runtime-only observation is unexercised, not confirmed: this module finds the
backward calls (`.backward(`, `manual_backward(`, `autograd.grad(` or a bare `grad(`) written in
the same function as a traced site (the module's top level when the site is there) whose lines no
traced backward ran on.

The file is read with CPython's `ast` when a report needs it, after the script ran; a file that
cannot be read or parsed gives no answer (None), which leaves the observation as it was.
"""

from __future__ import annotations

import ast
import functools
from typing import Iterator, Optional, Set, Tuple, Union

_BACKWARD_NAMES = frozenset({"backward", "manual_backward"})
_Scope = Union[ast.Module, ast.FunctionDef, ast.AsyncFunctionDef]


@functools.lru_cache(maxsize=32)
def _tree(path: str) -> Optional[ast.Module]:
    try:
        with open(path, "rb") as handle:
            return ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None


def _runs_backward(call: ast.Call) -> bool:
    """Is this call spelled as a backward (`x.backward()`, `self.manual_backward(loss)`,
    `torch.autograd.grad(...)`, `autograd.grad(...)`, a bare `grad(...)`)?"""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in _BACKWARD_NAMES or func.id == "grad"
    if isinstance(func, ast.Attribute):
        if func.attr in _BACKWARD_NAMES:
            return True
        owner = func.value
        return func.attr == "grad" and (
            (isinstance(owner, ast.Name) and owner.id == "autograd")
            or (isinstance(owner, ast.Attribute) and owner.attr == "autograd"))
    return False


def _innermost_scope(tree: ast.Module, line: int) -> _Scope:
    """The innermost function whose lines hold `line`, or the module."""
    scope: _Scope = tree
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            end = getattr(node, "end_lineno", None) or node.lineno
            if node.lineno <= line <= end:
                scope = node
                todo = list(ast.iter_child_nodes(node))
                continue
        elif not isinstance(node, ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))
    return scope


def _own_calls(scope: _Scope) -> Iterator[ast.Call]:
    """Calls in `scope`'s own body: not in the functions or classes defined inside it."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Call):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def untaken_backward(path: str, line: int, ran: Set[Tuple[str, int]]) -> Optional[int]:
    """The first line of a backward call written in the same function as line `line` of `path` (not
    the call on that line) on whose lines no traced backward ran; `ran` holds (path, line) of the
    innermost user frame of every traced backward and gradient call. None when each such call ran,
    none is written, or the file cannot be parsed."""
    tree = _tree(path)
    if tree is None:
        return None
    untaken = []
    for call in _own_calls(_innermost_scope(tree, line)):
        end = getattr(call, "end_lineno", None) or call.lineno
        if call.lineno <= line <= end or not _runs_backward(call):
            continue
        if not any((path, written) in ran for written in range(call.lineno, end + 1)):
            untaken.append(call.lineno)
    return min(untaken) if untaken else None
