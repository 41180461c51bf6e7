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
FOLLOW_SHARE = 0.9  # of those, moved with the gradient's sign (or all against it), at least


def follows(old, new, grad) -> Optional[bool]:
    """Did a value move from `old` to `new` (samples) along its gradient `grad` (a sample at the
    same elements)? True when at least FOLLOW_SHARE of the elements where both the change and the
    gradient are non-zero moved against the gradient's sign (descent: `p -= lr * p.grad`, with
    momentum or per-element scaling too) or with it (ascent); False when the signs do not agree
    (an average, a copy); None when too few elements tell (or the samples do not line up)."""
    if grad is None or not (old.is_floating_point() and grad.is_floating_point()):
        return None
    if old.shape != new.shape or old.shape != grad.shape or old.device != grad.device:
        return None
    change = (new - old).sign()
    direction = grad.to(change.dtype).sign()
    counted = (change != 0) & (direction != 0)
    told = int(counted.sum())
    if told < FOLLOW_MIN:
        return None
    along = int(((change == direction) & counted).sum())
    return along >= FOLLOW_SHARE * told or told - along >= FOLLOW_SHARE * told
