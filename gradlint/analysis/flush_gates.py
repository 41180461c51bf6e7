"""Accumulation gates that also open on the last iteration of their loop (the "flush").

`for i, x in enumerate(loader): ...; if (i + 1) % k == 0 or i + 1 == len(loader): opt.step()`
steps every k-th micro-batch and once more at the end of the loader, so no micro-batch is left
accumulated when the loop ends: a clear after the loop (or at the top of the next epoch) wipes
nothing a step still needed. The gradients-cleared-before-step analysis asks this module whether a
gate is such a one; it only recognises what the code shows:

- the loop walks `enumerate(X)` (index first; `start=` an integer literal) or `range(N)`;
- one disjunct of the gate's `or` (the gate itself, or a flag assigned once in the loop body and
  tested by the `if`) compares the index with the loop's length and is true on its last index:
  `i + 1 == len(X)`, `i == len(X) - 1`, `len(X) == i + 1`, `i + 1 >= len(X)`;
- the length is `len(X)` of the loop's own iterable (for `range(N)`, `N`), or a name assigned once
  in the enclosing function, to `len(X)`, and nowhere else bound there (`num_batches = len(loader)`);
- the loop body never rebinds the index, the iterable or that name.
"""

from __future__ import annotations

from typing import List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.bindings import assigned_keys, bound_by
from gradlint.analysis.names import dotted
from gradlint.analysis.tree import SCOPES, walk

# A side of the comparison: ("i" | "n", constant added), e.g. `i + 1` -> ("i", 1), `len(X) - 1` -> ("n", -1).
_Side = Tuple[str, int]


def is_flush_gate(gate: cst.If, loop: cst.For, scope: cst.CSTNode) -> bool:
    """Is the test of `gate`, an `if` written directly in `loop`'s body, true on the loop's last
    iteration because of a disjunct that compares the index with the loop's length? `scope` is
    the function (or module) holding the loop, where a name standing for the length is looked up."""
    walked = _walked(loop)
    if walked is None:
        return False
    index, last_offset, lengths = walked
    body_keys = assigned_keys(loop.body)
    iterables = {text[4:-1] if text.startswith("len(") else text for text in lengths}
    if index in body_keys or any(text in body_keys for text in iterables):
        return False
    names = _length_names(scope, lengths, body_keys)
    test = gate.test
    for disjunct in _disjuncts(_flag_value(test, loop, gate) or test):
        flag = _flag_value(disjunct, loop, gate) if isinstance(disjunct, cst.Name) else None
        for candidate in _disjuncts(flag) if flag is not None else [disjunct]:
            if _true_on_last(candidate, index, last_offset, lengths | names):
                return True
    return False


def _walked(loop: cst.For) -> Optional[Tuple[str, int, Set[str]]]:
    """(index name, last index minus the length, texts of the length) for `for i, x in
    enumerate(X)` / `for i in range(N)`; None for other loops."""
    it = loop.iter
    if not (isinstance(it, cst.Call) and isinstance(it.func, cst.Name)):
        return None
    name = it.func.value
    positional = [a for a in it.args if a.keyword is None and a.star == ""]
    keywords = [a for a in it.args if a.keyword is not None or a.star != ""]
    if name == "enumerate" and positional and it.args[0] is positional[0] and len(it.args) <= 2:
        start = 0
        for arg in it.args[1:]:  # `start`
            if arg.star or (arg.keyword is not None and arg.keyword.value != "start"):
                return None
            if not isinstance(arg.value, cst.Integer):
                return None
            start = int(arg.value.value, 0)
        target = loop.target
        if not (isinstance(target, (cst.Tuple, cst.List)) and len(target.elements) == 2):
            return None
        first = target.elements[0].value
        iterable = dotted(positional[0].value)
        if not isinstance(first, cst.Name) or iterable is None:
            return None
        return first.value, start - 1, {f"len({iterable})"}
    if name == "range" and len(it.args) == 1 and not keywords and isinstance(loop.target, cst.Name):
        text = _length_text(positional[0].value)
        if text is None:
            return None
        return loop.target.value, -1, {text}
    return None


def _length_text(expr: cst.BaseExpression) -> Optional[str]:
    """`len(X)` (X a dotted name) or a dotted name, as text; None for anything else."""
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Name) and expr.func.value == "len":
        if len(expr.args) == 1 and expr.args[0].keyword is None and expr.args[0].star == "":
            inner = dotted(expr.args[0].value)
            return f"len({inner})" if inner is not None else None
        return None
    return dotted(expr)


def _length_names(scope: cst.CSTNode, lengths: Set[str], body_keys: set) -> Set[str]:
    """Names bound exactly once in `scope` (not in nested defs), by `name = len(X)` with
    `len(X)` one of `lengths`, and not rebound in the loop body."""
    values: dict = {}
    counts: dict = {}
    for node in walk(scope, SCOPES):
        for key in bound_by(node):
            counts[key] = counts.get(key, 0) + 1
        if isinstance(node, cst.Assign) and len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            values[node.targets[0].target.value] = _length_text(node.value)
    return {
        name for name, text in values.items()
        if text in lengths and text.startswith("len(") and counts.get(name) == 1 and name not in body_keys
    }


def _disjuncts(test: cst.BaseExpression) -> List[cst.BaseExpression]:
    """The operands of a chain of `or` (the test itself when it is no `or`)."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.Or):
        return _disjuncts(test.left) + _disjuncts(test.right)
    return [test]


def _flag_value(test: cst.BaseExpression, loop: cst.For, gate: cst.If) -> Optional[cst.BaseExpression]:
    """For `if flag:` with `flag = <expr>` the only binding of `flag` in the loop body, a
    statement of the body itself before the one holding `gate`: `<expr>`."""
    if not isinstance(test, cst.Name):
        return None
    found: List[cst.BaseExpression] = []
    count = 0
    for node in walk(loop.body, SCOPES):
        if test.value in bound_by(node):
            count += 1
    for stmt in getattr(loop.body, "body", ()):
        if any(node is gate for node in walk(stmt, SCOPES)):
            break
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if (isinstance(small, cst.Assign) and len(small.targets) == 1
                        and isinstance(small.targets[0].target, cst.Name)
                        and small.targets[0].target.value == test.value):
                    found.append(small.value)
    return found[0] if count == 1 and len(found) == 1 else None


def _true_on_last(test: cst.BaseExpression, index: str, last_offset: int, lengths: Set[str]) -> bool:
    """Is `test` a comparison of the index with the length that holds when the index is
    `length + last_offset` (the last one)?"""
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return False
    target = test.comparisons[0]
    left = _side(test.left, index, lengths)
    right = _side(target.comparator, index, lengths)
    if left is None or right is None or left[0] == right[0]:
        return False
    operator = target.operator
    if left[0] == "n":  # `len(X) == i + 1`: read it as `i + 1 == len(X)`
        left, right = right, left
        flipped = {cst.LessThanEqual: cst.GreaterThanEqual, cst.Equal: cst.Equal}
        kind = flipped.get(type(operator))
    else:
        kind = type(operator) if isinstance(operator, (cst.Equal, cst.GreaterThanEqual)) else None
    if kind is None:
        return False
    # i + a (op) n + b, at i = n + last_offset: last_offset + a (op) b
    value, bound = last_offset + left[1], right[1]
    return value == bound if kind is cst.Equal else value >= bound


def _side(expr: cst.BaseExpression, index: str, lengths: Set[str]) -> Optional[_Side]:
    """`i`, `i + c`, `c + i`, `i - c` -> ("i", ±c); the same with the length -> ("n", ±c)."""
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Add, cst.Subtract)):
        sign = 1 if isinstance(expr.operator, cst.Add) else -1
        if isinstance(expr.right, cst.Integer):
            inner = _side(expr.left, index, lengths)
            if inner is not None and inner[1] == 0:
                return inner[0], sign * int(expr.right.value, 0)
        if sign == 1 and isinstance(expr.left, cst.Integer):
            inner = _side(expr.right, index, lengths)
            if inner is not None and inner[1] == 0:
                return inner[0], int(expr.left.value, 0)
        return None
    if isinstance(expr, cst.Name) and expr.value == index:
        return "i", 0
    text = _length_text(expr)
    if text is not None and text in lengths:
        return "n", 0
    return None
