"""Hand-written parameter updates: `p.data -= lr * p.grad` is an optimizer step.

Tutorial and research code often updates parameters by hand instead of through `torch.optim`:

    p -= lr * p.grad                      (under torch.no_grad())
    p.data -= lr * p.grad
    p.data = p.data - lr * p.grad
    p.data.add_(p.grad, alpha=-lr)        p.add_(-lr, p.grad.data)
    p.sub_(lr * p.grad)                   p.copy_(p - lr * p.grad)

Each reads the gradient of the very tensor it updates, so it applies that gradient just like
`optimizer.step()`; unless the gradient is cleared afterwards (`p.grad = None`, `p.grad.zero_()`,
`model.zero_grad()`), the next backward adds to it. Functional updates that build new tensors from
`torch.autograd.grad` results (MAML's fast weights) never read `.grad` and are not steps.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from gradlint.analysis.calls import calls_in
from gradlint.analysis.names import dotted
from gradlint.analysis.tree import walk

# In-place tensor methods that update their receiver from their arguments.
_UPDATING_METHODS = frozenset({"add_", "sub_", "addcdiv_", "addcmul_", "copy_", "lerp_"})
# Target of the step event of a hand-written update: the parameters themselves.
PARAMS = "<parameters>"


def _updated(expr: cst.BaseExpression) -> Optional[str]:
    """The tensor an update target names: `p` for `p` and `p.data`."""
    if isinstance(expr, cst.Attribute) and expr.attr.value == "data":
        expr = expr.value
    return dotted(expr)


def _reads_own_grad(expr: cst.CSTNode, tensor: str) -> bool:
    """Does `expr` read `<tensor>.grad` (or `<tensor>.data.grad`)?"""
    for node in walk(expr):
        if type(node) is cst.Attribute and node.attr.value == "grad" and _updated(node.value) == tensor:
            return True
    return False


def updated_by_statement(small: cst.CSTNode) -> Optional[str]:
    """The tensor a statement updates from its own gradient (`p.data -= lr * p.grad` -> `p`)."""
    if isinstance(small, cst.AugAssign):
        if not isinstance(small.operator, (cst.SubtractAssign, cst.AddAssign)):
            return None
        tensor = _updated(small.target)
        return tensor if tensor and _reads_own_grad(small.value, tensor) else None
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        target = small.targets[0].target
        if not (isinstance(target, cst.Attribute) and target.attr.value == "data"):
            return None  # `x = x - lr * x.grad` binds a new tensor, whose `.grad` starts empty
        tensor = _updated(target)
        if tensor and isinstance(small.value, cst.BinaryOperation) and _reads_own_grad(small.value, tensor):
            # `p.data = p.data - lr * p.grad`: the new value is the old one moved along its gradient
            return tensor if _updated_operand(small.value, tensor) else None
    return None


def _updated_operand(value: cst.BinaryOperation, tensor: str) -> bool:
    if not isinstance(value.operator, (cst.Subtract, cst.Add)):
        return False
    return _updated(value.left) == tensor if isinstance(value.left, (cst.Name, cst.Attribute)) else False


def updated_by_call(call: cst.Call) -> Optional[str]:
    """The tensor an in-place call updates from its own gradient (`p.data.add_(p.grad, alpha=-lr)`)."""
    func = call.func
    if not isinstance(func, cst.Attribute) or func.attr.value not in _UPDATING_METHODS:
        return None
    tensor = _updated(func.value)
    if not tensor or tensor.endswith(".grad") or func.value is None:
        return None
    if isinstance(func.value, cst.Attribute) and func.value.attr.value == "grad":
        return None  # p.grad.add_(...): changes the gradient, not the parameter
    if any(_reads_own_grad(arg.value, tensor) for arg in call.args):
        return tensor
    return None


def has_manual_update(body: cst.CSTNode) -> bool:
    """Does `body` (a helper's) update a tensor from its own gradient, in a call or a statement?"""
    if any(updated_by_call(call) is not None for call in calls_in(body)):
        return True
    return any(
        type(node) in (cst.AugAssign, cst.Assign) and updated_by_statement(node) is not None
        for node in walk(body, (cst.FunctionDef, cst.ClassDef, cst.Lambda))
    )
