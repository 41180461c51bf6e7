"""Samples of a leaf's value and gradient: how the tracer tells a hand-written update from a value
changed some other way, at a cost that does not grow with the leaf's size (gradstate.py)."""

from __future__ import annotations

from typing import Any, Optional

VALUE_SAMPLE = 16  # elements of a leaf in no optimizer compared to see a hand-written update


def sample(tensor) -> Any:
    """A copy of up to VALUE_SAMPLE evenly spaced elements of `tensor` (flattened); raises for a
    layout without a flat view (sparse)."""
    value = tensor.detach()
    flat = value.view(-1) if value.is_contiguous() else value.reshape(-1)
    step = max(1, flat.numel() // VALUE_SAMPLE)
    return flat[::step][:VALUE_SAMPLE].clone()


FOLLOW_MIN = 4  # sampled elements where both the change and the gradient are non-zero, at least
FOLLOW_SHARE = 0.9  # of those, moved in proportion to the gradient, at least
FOLLOW_SLACK = 0.02  # relative distance from the common ratio of change to gradient still "in proportion"


def follows(old, new, grad) -> Optional[bool]:
    """Did a value move from `old` to `new` (samples) by a step from its gradient `grad` (a sample
    at the same elements)? True when at least FOLLOW_SHARE of the elements where both the change
    and the gradient are non-zero moved by one common multiple of the gradient (descent:
    `p -= lr * p.grad`, `p.data.add_(p.grad, alpha=-lr)`; or ascent), within FOLLOW_SLACK and the
    rounding of the value; False otherwise (an average or a copy of other weights, which may even
    share the gradient's signs: a mean teacher pulled toward its student moves the way its own
    distillation gradient points, but not in proportion to it); None when too few elements tell
    (or the samples do not line up). A hand-written step with momentum, weight decay or
    per-element scaling is not in proportion either, and is not told apart from an average."""
    import torch

    if grad is None or not (old.is_floating_point() and grad.is_floating_point()):
        return None
    if old.shape != new.shape or old.shape != grad.shape or old.device != grad.device:
        return None
    change = (new - old).double()
    gradient = grad.double()
    counted = (change != 0) & (gradient != 0)
    told = int(counted.sum())
    if told < FOLLOW_MIN:
        return None
    ratios = change[counted] / gradient[counted]
    ratio = ratios.median()
    expected = ratio * gradient[counted]
    # A step rounds the new value to the nearest representable one: half a unit in its last place
    # (at most eps * |value|) off the exact multiple. An average moving a value by a few such units
    # only is not in proportion to its gradient for being that small.
    rounding = _eps(old) * torch.maximum(old.double().abs(), new.double().abs())[counted]
    close = (change[counted] - expected).abs() <= FOLLOW_SLACK * expected.abs() + rounding
    return int(close.sum()) >= FOLLOW_SHARE * told


def _eps(tensor) -> float:
    import torch

    try:
        return float(torch.finfo(tensor.dtype).eps)
    except TypeError:
        return 0.0
