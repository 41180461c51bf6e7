"""Content probes (gradstate.py): samples of a leaf's value and gradient, which tell a hand-written
update from a value changed some other way at a cost that does not grow with the leaf's size; and
gradient norms queued on the device, read back in one sync per device, which tell a gradient
carried over as a step used it from one cleared through `.data`."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

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
# A change of fewer units in the last place of the value than this tells nothing about proportion:
# rounding alone moves it by up to half a unit.
RESOLVED_ULPS = 8
FAINT = "faint"  # follows(): the value moved, but by too little to tell how


def follows(old, new, grad) -> Union[bool, str, None]:
    """Did a value move from `old` to `new` (samples) by a step from its gradient `grad` (a sample
    at the same elements)? True when at least FOLLOW_SHARE of the elements where both the change
    and the gradient are non-zero, and the change is at least RESOLVED_ULPS units in the last place,
    moved by one common multiple of the gradient (descent: `p -= lr * p.grad`,
    `p.data.add_(p.grad, alpha=-lr)`; or ascent), within FOLLOW_SLACK and the rounding of the value;
    False otherwise (an average or a copy of other weights, which may even share the gradient's
    signs: a mean teacher pulled toward its student moves the way its own distillation gradient
    points, but not in proportion to it); FAINT when fewer than FOLLOW_MIN elements moved that
    much; None when too few elements tell at all (or the samples do not line up). A hand-written
    step with momentum, weight decay or per-element scaling is not in proportion either, and is not
    told apart from an average."""
    import torch

    if grad is None or not (old.is_floating_point() and grad.is_floating_point()):
        return None
    if old.shape != new.shape or old.shape != grad.shape or old.device != grad.device:
        return None
    change = (new - old).double()
    gradient = grad.double()
    counted = (change != 0) & (gradient != 0)
    if int(counted.sum()) < FOLLOW_MIN:
        return None
    # A step rounds the new value to the nearest representable one: half a unit in its last place
    # (at most eps * |value|) off the exact multiple.
    rounding = _eps(old) * torch.maximum(old.double().abs(), new.double().abs())
    counted &= change.abs() >= RESOLVED_ULPS * rounding
    told = int(counted.sum())
    if told < FOLLOW_MIN:
        return FAINT
    ratio = (change[counted] / gradient[counted]).median()
    expected = ratio * gradient[counted]
    close = (change[counted] - expected).abs() <= FOLLOW_SLACK * expected.abs() + rounding[counted]
    return int(close.sum()) >= FOLLOW_SHARE * told


def stepped_by_hand(verdicts: List[Union[bool, str, None]]) -> Tuple[List[bool], bool]:
    """From the follows() verdicts of the leaves in no optimizer whose value changed since the last
    backward into them: which to take as updated from their (stale) gradients, and whether the
    changes show that nothing read those gradients. A hand-written update moves every leaf it trains
    by a multiple of its gradient: where one leaf shows it, the leaves too small to tell (None) were
    updated too; where no leaf could tell at all, the change of value alone decides; where every
    leaf that could tell moved otherwise (an average of another model's weights, a copy), nothing
    read these gradients. A FAINT leaf is never taken as updated, and shows nothing either way."""
    told = [verdict for verdict in verdicts if verdict is True or verdict is False]
    if any(told) or not (told or FAINT in verdicts):
        return [verdict is True or verdict is None for verdict in verdicts], False
    return [False] * len(verdicts), bool(told)


def _eps(tensor) -> float:
    import torch

    try:
        return float(torch.finfo(tensor.dtype).eps)
    except TypeError:
        return 0.0


def norms(grads: list, torch) -> list:
    """The L1 norm of each gradient as a 0-dim tensor on its device (no host sync), None where
    it cannot be taken. A DTensor gradient is probed by this rank's shard."""
    tensors = []
    for grad in grads:
        to_local = getattr(grad, "to_local", None)
        tensors.append(to_local() if callable(to_local) else grad)
    with torch.no_grad():
        if all(t.layout == torch.strided for t in tensors):
            try:  # one call for the whole list, as clip_grad_norm_ does
                return list(torch._foreach_norm(tensors, 1))
            except Exception:
                pass
        out = []
        for tensor in tensors:
            try:
                if tensor.is_sparse:
                    tensor = tensor._values()
                elif tensor.layout != torch.strided:
                    tensor = tensor.values()
                out.append(torch.linalg.vector_norm(tensor, 1))
            except Exception:
                out.append(None)
        return out


def compare(old: list, now: list, torch) -> List[Optional[Tuple[float, float]]]:
    """Pairs of norms (0-dim tensors) as numbers; None where either is missing. Reading them
    back syncs once per device."""
    out: List[Optional[Tuple[float, float]]] = [None] * len(now)
    by_device: Dict[object, List[int]] = {}
    for index, (before, after) in enumerate(zip(old, now)):
        if before is not None and after is not None and before.device == after.device:
            by_device.setdefault(after.device, []).append(index)
    for device, indexes in by_device.items():
        try:
            if getattr(device, "type", None) == "cpu":  # nothing to sync: read them one by one
                for index in indexes:
                    out[index] = (old[index].item(), now[index].item())
                continue
            values = torch.stack([old[i] for i in indexes] + [now[i] for i in indexes]).tolist()
        except Exception:
            continue
        half = len(indexes)
        for position, index in enumerate(indexes):
            out[index] = (values[position], values[half + position])
    return out


def value_of(leaf) -> Optional[Tuple[int, Any]]:
    """(storage address, a copy of up to VALUE_SAMPLE evenly spaced elements) of a leaf's value:
    an update changes (nearly) every element, and a sample costs the same for any size of leaf (a
    backbone left out of the optimizer is probed after every backward). None when it cannot be
    taken."""
    try:
        return leaf.data_ptr(), sample(leaf)
    except Exception:
        return None


def updated(leaf, seen: Optional[Tuple[int, Any]], version: int, grad_sample) -> Tuple[bool, Union[bool, str, None]]:
    """Was a leaf in no optimizer updated since the last backward into it, and from its gradient?
    `seen`, `version` and `grad_sample` are its value probe, version counter and gradient sample
    after that backward. (changed, how): changed when its version counter, storage or sampled
    elements differ; how is True when it moved along (or against) the gradient that backward
    left, False when in no relation to it (an exponential moving average of another model's
    weights, a copy: the gradient was not read), None when the samples cannot tell."""
    now = value_of(leaf) if seen is not None else None
    if seen is None or now is None:
        return leaf._version != version, None  # the counter alone
    changed = leaf._version != version or now[0] != seen[0]
    try:
        old, new = seen[1], now[1]
        if not changed:
            same = (old == new) | (old.isnan() & new.isnan()) if old.is_floating_point() else old == new
            changed = not bool(same.all())
        return changed, (follows(old, new, grad_sample) if changed else None)
    except Exception:
        return changed, None
