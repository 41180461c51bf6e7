"""Backward calls that reached no parameter because they started from a leaf (GL007 at run time).

A loss made a new leaf (`torch.tensor(loss.item(), requires_grad=True)`) is backpropagated as it
is, or through a little arithmetic on it: `(loss / accum).backward()`, `scaler.scale(loss).backward()`.
Either way the backward writes only into that leaf's `.grad`. Asked only after a backward that wrote
no optimizer parameter's gradient, so training loops never pay for it.
"""

from __future__ import annotations

from typing import Callable, Optional

LEAF, DERIVED = "leaf", "derived"

# Nodes walked from a root at most: a leaf loss scaled, divided or summed is a handful of nodes; a
# graph larger than this comes from a model and is not a leaf loss.
WALK_LIMIT = 16


def leaf_rooted(roots: list, owned: Callable[[object], bool], torch) -> Optional[str]:
    """Did a backward from `roots` start at a leaf loss? LEAF when every root is a leaf that
    requires grad and no optimizer holds; DERIVED when some are instead computed from such
    leaves alone, each of one element (a loss, not a batch of inputs or representations made
    leaves on purpose, as saliency maps and GradCache do); else None. `owned(tensor)` tells
    whether an optimizer holds a leaf."""
    if not roots:
        return None
    kind = LEAF
    for root in roots:
        if not isinstance(root, torch.Tensor) or not root.requires_grad:
            return None
        node = root.grad_fn
        if node is None:
            if owned(root):
                return None
            continue
        if not _from_one_element_leaves(node, owned, torch):
            return None
        kind = DERIVED
    return kind


def _from_one_element_leaves(node, owned: Callable[[object], bool], torch) -> bool:
    """Does the graph below `node` (fewer than WALK_LIMIT nodes) end only in one-element leaves
    no optimizer holds, at least one of them?"""
    seen = {id(node)}
    todo = [node]
    keep = [node]  # holds the walked nodes alive while their ids are in `seen`
    leaves = 0
    while todo:
        current = todo.pop()
        leaf: Optional[object] = getattr(current, "variable", None)
        if leaf is not None:
            if not isinstance(leaf, torch.Tensor) or leaf.numel() != 1 or owned(leaf):
                return False
            leaves += 1
            continue
        for child, _ in current.next_functions:
            if child is None or id(child) in seen:
                continue
            if len(seen) >= WALK_LIMIT:
                return False
            seen.add(id(child))
            keep.append(child)
            todo.append(child)
    return leaves > 0
