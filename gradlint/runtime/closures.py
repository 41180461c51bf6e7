"""Step closures: an optimizer reads the gradients each time its closure returns.

`LBFGS.step(closure)` evaluates the closure several times in one step and reads the gradients after
each evaluation; `SGD.step(closure)` and the others evaluate it once. A closure's return is
therefore a use of the gradients, as a step is, and two bugs show only there:

- a closure that clears after its own backward (`loss.backward(); opt.zero_grad(); return loss`)
  hands the optimizer none of the gradients it computed (GL005, charged to that clear);
- a closure without a clear, under a clear written once before `opt.step(closure)`: each evaluation
  after the first accumulates onto the gradients the previous one returned (GL001). What a closure's
  backward marked stale is judged when the closure returns, each evaluation as one read of stale
  gradients, then the gradients are remembered as read.

The tracer wraps the closure a step is given (tracer.py) and calls these around each evaluation.
"""

from __future__ import annotations

from typing import Tuple

from gradlint.runtime.events import CLEAR_BEFORE_STEP, Observations
from gradlint.runtime.gradstate import GradState
from gradlint.runtime.handgrads import assigned_after_clear

Entered = Tuple[int, int]  # (backward calls, clears that dropped fresh gradients) when it began


def closure_entered(grads: GradState, obs: Observations) -> Entered:
    return obs.backward_calls, grads.dropping_clears


def closure_returned(grads: GradState, obs: Observations, optimizer, entered: Entered) -> None:
    """The closure of `optimizer`'s running step returned; the optimizer reads the gradients now."""
    backwards, clears = entered
    if obs.backward_calls == backwards:
        return  # no backward in this evaluation (a closure that only computes the loss)
    adopted = grads.optimizers.get(id(optimizer))
    if adopted is None or adopted.ref() is not optimizer:
        return
    if grads.dropping_clears != clears and not any(state.fresh is not None for _, state in adopted.pairs):
        # every gradient this evaluation's backward wrote was cleared before the optimizer could
        # read it, and none was assigned since (`p.grad = g` after the clear is read, not lost)
        if not assigned_after_clear(adopted.pairs):
            discarded = {id(state.discarded): state.discarded for _, state in adopted.pairs
                         if state.discarded is not None}
            for site in discarded.values():
                site.bump(CLEAR_BEFORE_STEP)
    grads.judge_marks(adopted)  # its backward accumulated onto gradients read before: judged now
    grads.mark_used(adopted, True)
