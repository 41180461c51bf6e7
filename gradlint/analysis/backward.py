"""What counts as a backward call, and what it was asked to do.

One place decides this for every rule: `loss.backward()`, `torch.autograd.backward(...)`,
`torch.autograd.grad(...)`, `scaler.scale(loss).backward()`, `accelerator.backward(loss)`,
`fabric.backward(loss)`, `model_engine.backward(loss)` and Lightning's `self.manual_backward(loss)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import libcst as cst

from gradlint.analysis.names import ImportMap, dotted

AUTOGRAD_BACKWARD = ("torch.autograd.backward",)
AUTOGRAD_GRAD = ("torch.autograd.grad",)
# The last part of every name above, and the methods that run a backward (see backward_call).
_BACKWARD_ATTRIBUTES = frozenset({"backward", "grad", "manual_backward"})

# Objects whose `.backward(loss)` runs the backward of `loss` for you (and may scale it).
_DELEGATE_HINTS = ("accel", "fabric", "engine", "strategy")  # "accel": also `accelerator`


@dataclass(frozen=True)
class BackwardCall:
    node: cst.Call
    # "tensor": x.backward(); "autograd.backward"; "autograd.grad"; "delegate": accelerator.backward(x);
    # "manual": self.manual_backward(x)
    kind: str
    tensor: Optional[cst.BaseExpression]  # the root the graph is walked from (the loss)
    gradient: Optional[cst.BaseExpression]  # gradient= / grad_tensors= / grad_outputs=
    retain_graph: Optional[cst.BaseExpression]
    create_graph: Optional[cst.BaseExpression]
    inputs: Optional[cst.BaseExpression]
    scaled: bool = False  # scaler.scale(loss).backward()

    @property
    def accumulates(self) -> bool:
        """Does it write into `.grad`? (`torch.autograd.grad` returns gradients instead.)"""
        return self.kind != "autograd.grad"


def _args(call: cst.Call, positional: tuple[str, ...]) -> dict[str, cst.BaseExpression]:
    """Map a call's arguments to parameter names, given the positional order."""
    out: dict[str, cst.BaseExpression] = {}
    index = 0
    for arg in call.args:
        if arg.star:
            continue  # *args / **kwargs: unknown, leave those parameters unset
        if arg.keyword is not None:
            out[arg.keyword.value] = arg.value
        elif index < len(positional):
            out[positional[index]] = arg.value
            index += 1
    return out


def _first(args: dict[str, cst.BaseExpression], *names: str) -> Optional[cst.BaseExpression]:
    for name in names:
        if name in args:
            return args[name]
    return None


def _has_star(call: cst.Call) -> bool:
    return any(arg.star for arg in call.args)


def _is_delegate(receiver: cst.BaseExpression) -> bool:
    text = dotted(receiver)
    if text is None:
        return False
    last = text.rsplit(".", 1)[-1].lower()
    return any(hint in last for hint in _DELEGATE_HINTS)


def _scaled_tensor(receiver: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """`scaler.scale(loss)` -> `loss` (GradScaler / amp); else None."""
    if (
        isinstance(receiver, cst.Call)
        and isinstance(receiver.func, cst.Attribute)
        and receiver.func.attr.value == "scale"
        and len(receiver.args) == 1
        and receiver.args[0].keyword is None
        and not receiver.args[0].star
    ):
        return receiver.args[0].value
    return None


def backward_call(call: cst.Call, imports: ImportMap) -> Optional[BackwardCall]:
    """Describe `call` if it runs a backward pass, else None."""
    func = call.func
    # Asked of every call of a file by several analyses: answer most without resolving names.
    # An attribute call resolves to a name ending in its attribute, and only a name or an
    # attribute chain resolves at all.
    kind = type(func)
    if kind is cst.Attribute:
        if func.attr.value not in _BACKWARD_ATTRIBUTES:  # type: ignore[attr-defined]
            return None
    elif kind is not cst.Name:
        return None
    if imports.is_torch(func, *AUTOGRAD_BACKWARD):
        args = _args(call, ("tensors", "grad_tensors", "retain_graph", "create_graph", "grad_variables", "inputs"))
        return BackwardCall(
            node=call,
            kind="autograd.backward",
            tensor=args.get("tensors"),
            gradient=_first(args, "grad_tensors", "grad_variables"),
            retain_graph=args.get("retain_graph"),
            create_graph=args.get("create_graph"),
            inputs=args.get("inputs"),
        )
    if imports.is_torch(func, *AUTOGRAD_GRAD):
        args = _args(call, ("outputs", "inputs", "grad_outputs", "retain_graph", "create_graph"))
        return BackwardCall(
            node=call,
            kind="autograd.grad",
            tensor=args.get("outputs"),
            gradient=args.get("grad_outputs"),
            retain_graph=args.get("retain_graph"),
            create_graph=args.get("create_graph"),
            inputs=args.get("inputs"),
        )
    if not isinstance(func, cst.Attribute):
        return None
    method = func.attr.value
    receiver = func.value
    if method == "manual_backward":
        # LightningModule.manual_backward(loss, *args, **kwargs) -> loss.backward(*args, **kwargs)
        args = _args(call, ("loss", "gradient", "retain_graph", "create_graph", "inputs"))
        return BackwardCall(
            node=call,
            kind="manual",
            tensor=args.get("loss"),
            gradient=args.get("gradient"),
            retain_graph=args.get("retain_graph"),
            create_graph=args.get("create_graph"),
            inputs=args.get("inputs"),
        )
    if method != "backward":
        return None
    # `torch.autograd.backward` spelt through an alias is handled above; any other module-like
    # receiver we know (torch, torch.autograd) is not a tensor.
    if imports.resolve(receiver) in ("torch", "torch.autograd"):
        return None
    if _is_delegate(receiver) and call.args and call.args[0].keyword is None:
        # After the loss, delegates take their own positional arguments (Lightning's
        # `strategy.backward(loss, optimizer)`, DeepSpeed's `allreduce_gradients`): only
        # keywords are torch's.
        args = _args(call, ("loss",))
        return BackwardCall(
            node=call,
            kind="delegate",
            tensor=args.get("loss"),
            gradient=args.get("gradient"),
            retain_graph=args.get("retain_graph"),
            create_graph=args.get("create_graph"),
            inputs=args.get("inputs"),
        )
    args = _args(call, ("gradient", "retain_graph", "create_graph", "inputs"))
    scaled = _scaled_tensor(receiver)
    return BackwardCall(
        node=call,
        kind="tensor",
        tensor=scaled if scaled is not None else receiver,
        gradient=args.get("gradient"),
        retain_graph=args.get("retain_graph"),
        create_graph=args.get("create_graph"),
        inputs=args.get("inputs"),
        scaled=scaled is not None,
    )


def unknown_arguments(call: cst.Call) -> bool:
    """`*args`/`**kwargs` in the call: a parameter we read as absent may in fact be passed."""
    return _has_star(call)
