"""Step pre-hooks that run after the tracer's: what they do to the gradients (a clip, a clear) is
what the step uses, so the step is judged after them.

torch runs the global step pre-hooks first (the tracer's is one), then the optimizer's own
(`optimizer.register_step_pre_hook`)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.optim.optimizer as optim_mod
from torch import nn

from gradlint.runtime import judges
from runtime_helpers import REPO, finding_on, tracing
from runtime_loops import batches, mlp

HERE = os.path.realpath(__file__)





def _train(optimizer, model, steps=4):
    for inputs, labels in batches(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()


@pytest.mark.parametrize("where", ["own", "own-after-first-step", "global-after-tracer"])
def test_a_clip_in_a_step_pre_hook_is_what_the_step_uses(where):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def clip(opt, args, kwargs):
        nn.utils.clip_grad_norm_(model.parameters(), 0.01)  # clip: in a step pre-hook

    handle = None
    with tracing() as traced:
        if where == "own":
            handle = optimizer.register_step_pre_hook(clip)
        elif where == "global-after-tracer":
            handle = optim_mod.register_optimizer_step_pre_hook(clip)
        _train(optimizer, model, 1)
        if where == "own-after-first-step":
            handle = optimizer.register_step_pre_hook(clip)
        _train(optimizer, model, 4)
    handle.remove()
    obs = traced.observations
    assert obs.steps == 5 and obs.internal_errors == 0
    assert judges.runtime_only_clip(obs, "GL004", set(), REPO) == []
    assert judges.judge_clip(finding_on(HERE, "GL004", "# clip: in a step pre-hook"), obs, REPO)[0] != "confirmed"
    assert not optimizer._optimizer_step_pre_hooks  # the tracer's own hook left with it


def test_a_clear_in_a_step_pre_hook_drops_what_the_step_should_use():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def wipe(opt, args, kwargs):
        opt.zero_grad(set_to_none=False)  # clear: in a step pre-hook

    handle = optimizer.register_step_pre_hook(wipe)
    try:
        with tracing() as traced:
            _train(optimizer, model, 4)
    finally:
        handle.remove()
    (found,) = judges.runtime_only_clear_before_step(traced.observations, "GL005", set(), REPO)
    assert found.line == finding_on(HERE, "GL005", "# clear: in a step pre-hook").line


def test_a_step_pre_hook_beside_a_closure_still_sees_each_evaluation():
    torch.manual_seed(0)
    model, inputs, targets = nn.Linear(4, 1), torch.randn(16, 4), torch.randn(16, 1)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    seen = []
    handle = optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(1))

    def closure():  # never clears: each evaluation after the first adds onto what LBFGS read
        loss = (model(inputs) - targets).pow(2).mean()
        loss.backward()
        return loss

    try:
        with tracing() as traced:
            for _ in range(3):
                optimizer.step(closure)
    finally:
        handle.remove()
    obs = traced.observations
    assert len(seen) == 3 and obs.steps == 3 and obs.internal_errors == 0
    (site,) = [s for s in obs.sites.values() if s.calls]
    assert site.stale_steps == 3  # the closure the tracer wraps is the one LBFGS ran


def test_every_step_is_counted_once_whatever_the_hooks():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = optimizer.register_step_pre_hook(lambda opt, args, kwargs: None)
    with tracing() as traced:
        _train(optimizer, model, 2)
        handle.remove()  # only the tracer's own hook is left on the optimizer
        _train(optimizer, model, 3)
    assert traced.observations.steps == 5


@pytest.mark.parametrize("how", ["none", "zero"])
def test_a_clear_by_hand_in_a_step_pre_hook_is_reported_at_the_backward(how):
    """`p.grad = None` per parameter calls nothing the tracer wraps, so the clear cannot be placed;
    the backward whose gradients every step found gone is reported instead."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def wipe(opt, args, kwargs):
        for param in model.parameters():
            if how == "none":
                param.grad = None
            else:
                param.grad.zero_()

    handle = optimizer.register_step_pre_hook(wipe)
    try:
        with tracing() as traced:
            for inputs, labels in batches(4):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(inputs), labels).backward()  # backward: wiped by hand
                optimizer.step()
    finally:
        handle.remove()
    (found,) = judges.runtime_only_clear_before_step(traced.observations, "GL005", set(), REPO)
    assert found.line == finding_on(HERE, "GL005", "# backward: wiped by hand").line
    assert "cleared by hand" in found.message


def test_hand_clears_that_keep_the_steps_gradients_report_nothing_from_the_run():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tracing() as traced:
        for index, (inputs, labels) in enumerate(batches(8)):
            nn.functional.cross_entropy(model(inputs), labels).backward()
            if index % 2 == 1:  # accumulate two micro-batches, step, then clear by hand
                optimizer.step()
                for param in model.parameters():
                    param.grad = None
    assert judges.runtime_only_clear_before_step(traced.observations, "GL005", set(), REPO) == []
