"""Gradients changed by hand between a backward and the optimizer step that follows it.

`p.grad = None` and `p.grad.zero_()` per parameter call nothing the tracer can wrap, and
`p.grad = summed / n` replaces what a backward wrote with something a step will use. A step sees
both only as the state of its parameters' gradients against what the tracer last saw of them
(gradstate.py): every gradient a backward wrote for the step gone (None, or all zeros) is GL005's
observation without a clear call; one assigned or changed by hand (non-zero) means the step uses
gradients no backward wrote directly, which may have been read from clipped ones first (GL004).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from gradlint.runtime.events import FRESH_DROPPED, BackwardSite


def assigned_after_clear(pairs: List[Tuple[Any, Any]]) -> bool:
    """Does a parameter whose gradient a clear dropped hold one assigned since? (`pairs`: an
    optimizer's (weakref(param), LeafState) pairs)"""
    for ref, state in pairs:
        if state.discarded is not None:
            param = ref()
            grad = param.grad if param is not None else None
            if grad is not None and not state.untouched(grad):
                return True
    return False


def dropped_by_hand(gone: List[Tuple[Any, Any]], torch) -> bool:
    """A step's fresh gradients ((LeafState, its .grad now) pairs), none as the backward that
    wrote them left it: each is None, replaced, or changed in place (not by a clip). Set to None
    or zeroed, every one of them: the step sees none of what the backward produced, and each
    backward that wrote them is charged. One that still holds something non-zero was assigned by
    hand (`p.grad = summed / n`) or scaled (unscaled, averaged): the step uses it (returns True
    then)."""
    for _, grad in gone:
        if grad is not None and not all_zero(grad, torch):
            return True
    _charge_writers([state for state, _ in gone])
    return False


def zeroed_through_data(pairs: List[Tuple[Any, Any]], torch) -> bool:
    """Were a step's fresh gradients (of an optimizer's (weakref(param), LeafState) `pairs`), each
    still the object and version its backward left, all zeroed through `.data`
    (`p.grad.data.zero_()`, which leaves the version counter as it was) since that backward wrote
    something non-zero (`LeafState.written`; a backward may write zeros itself: `(out * 0).sum()`)?
    Then the step sees none of what the backward produced, and each backward that wrote them is
    charged. Stops at the first non-zero gradient: one host sync on a normal step."""
    zeroed = []
    wrote = False
    try:
        for ref, state in pairs:
            if state.fresh is None:
                continue
            param = ref()
            grad = param.grad if param is not None else None
            if grad is None:
                continue
            if not all_zero(grad, torch):
                return False
            zeroed.append(state)
            if not wrote and state.written is not None:
                wrote = bool(state.written != 0)
    finally:
        for _, state in pairs:
            state.written = None  # each step judges what the backward before it wrote
    if zeroed and wrote:
        _charge_writers(zeroed)
        return True
    return False


def _charge_writers(states: List[Any]) -> None:
    """One FRESH_DROPPED per backward site that wrote the fresh gradients of `states`."""
    writers: Dict[int, BackwardSite] = {}
    for state in states:
        if state.fresh is not None:
            writers[id(state.fresh)] = state.fresh
    for site in writers.values():
        site.bump(FRESH_DROPPED)


def all_zero(grad, torch) -> bool:
    """Does a gradient hold only zeros? False when it cannot be told (one host sync)."""
    try:
        to_local = getattr(grad, "to_local", None)
        tensor = to_local() if callable(to_local) else grad
        if tensor.layout != torch.strided:
            tensor = tensor._values() if tensor.is_sparse else tensor.values()
        return not bool(tensor.any())
    except Exception:
        return False
