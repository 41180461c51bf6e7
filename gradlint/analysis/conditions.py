"""Branch conditions of training loops: when two `if` tests are one decision, and what a
`% k` gate does in the common configuration `k == 1`.

`condition_key` gives two tests the same key when they must take the same branch (the same text,
or gated on the same period `% k`, which accumulation code aligns on purpose). `unit_branch` says
which branch a gate like `it % k == 1` takes when `k == 1` (then `it % k` is always 0): code whose
clear is gated on `% k == 1` while its step is gated on `% k == 0` never clears with `k == 1`.
"""

from __future__ import annotations

import re
from typing import FrozenSet, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.calls import calls_in
from gradlint.analysis.names import dotted
from gradlint.analysis.object_kinds import norm
from gradlint.analysis.tree import children, walk

def _has_call(expr: cst.CSTNode) -> bool:
    return bool(calls_in(expr))


def _names(expr: cst.CSTNode) -> FrozenSet[str]:
    """Names and dotted attribute chains (`self.step`, not entered further) read in `expr`."""
    out: List[str] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if type(node) is cst.Attribute:
            text = dotted(node)
            if text is not None:
                out.append(text)
                continue
        elif type(node) is cst.Name:
            out.append(node.value)
        stack.extend(children(node))
    return frozenset(out)


def _moduli(expr: cst.CSTNode) -> List[cst.BaseExpression]:
    """Right operands of the `%` operations in `expr` (callers compare their texts only)."""
    return [node.right for node in walk(expr)
            if type(node) is cst.BinaryOperation and isinstance(node.operator, cst.Modulo)]


def without_not(test: cst.BaseExpression) -> Tuple[cst.BaseExpression, bool]:
    """(the test under any `not`s, whether an even number of them: the test's own polarity)."""
    positive = True
    while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test = test.expression
        positive = not positive
    return test, positive


def condition_key(test: cst.BaseExpression, module: cst.Module) -> Optional[Tuple[str, FrozenSet[str], bool]]:
    """(key, names it depends on, polarity) of a branch condition, or None when it cannot be
    compared with others (it calls something, so two evaluations may differ)."""
    test, positive = without_not(test)
    if _has_call(test):
        return None
    moduli = _moduli(test)
    texts = {norm(module.code_for_node(m)) for m in moduli}
    if len(texts) == 1:
        # `(i + 1) % k == 0`, `step % k == 0`, `i % k != 0`: gated on the same period, assumed aligned
        if (
            isinstance(test, cst.Comparison)
            and len(test.comparisons) == 1
            and isinstance(test.comparisons[0].operator, cst.NotEqual)
        ):
            positive = not positive
        return "%" + texts.pop(), _names(moduli[0]), positive
    if (
        isinstance(test, cst.Comparison)
        and len(test.comparisons) == 1
        and isinstance(test.comparisons[0].operator, (cst.NotEqual, cst.IsNot))
    ):
        op = "==" if isinstance(test.comparisons[0].operator, cst.NotEqual) else " is "
        text = (
            _canonical(module.code_for_node(test.left))
            + op
            + _canonical(module.code_for_node(test.comparisons[0].comparator))
        )
        return text, _names(test), not positive
    return _canonical(module.code_for_node(test)), _names(test), positive


def _canonical(text: str) -> str:
    """Condition text with insignificant spaces dropped: `(i+1)` == `( i + 1 )`, `a is b` kept."""
    text = re.sub(r"\s*([^\w\s])\s*", r"\1", text.strip())
    return re.sub(r"\s+", " ", text)


def _modulo_period(expr: cst.BaseExpression, module: cst.Module) -> Optional[str]:
    """The key of `x % k` when `k` is a name or an attribute (a setting, not a literal), else None."""
    if not (isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Modulo)):
        return None
    if not isinstance(expr.right, (cst.Name, cst.Attribute)) or dotted(expr.right) is None:
        return None
    if _has_call(expr.left):
        return None
    return "%" + norm(module.code_for_node(expr.right))


def unit_branch(test: cst.BaseExpression, module: cst.Module) -> Optional[Tuple[str, bool]]:
    """(period key, whether the test holds) for a gate on `% k` evaluated with `k == 1`, where
    `x % k` is 0 whatever `x` is: `it % k == 1` -> False, `(i + 1) % k == 0` -> True,
    `i % k != 0` -> False, `i % k` -> False. None for any other test."""
    test, positive = without_not(test)
    period = _modulo_period(test, module)
    if period is not None:
        return period, not positive  # `if i % k:` is false when k == 1
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return None
    comparison = test.comparisons[0]
    if not isinstance(comparison.operator, (cst.Equal, cst.NotEqual)):
        return None
    left, right = test.left, comparison.comparator
    if _modulo_period(left, module) is None:
        left, right = right, left  # `0 == i % k`
    period = _modulo_period(left, module)
    if period is None or not isinstance(right, cst.Integer):
        return None
    try:
        constant = int(right.value.replace("_", ""), 0)
    except ValueError:
        return None
    holds = constant == 0 if isinstance(comparison.operator, cst.Equal) else constant != 0
    return period, holds == positive
