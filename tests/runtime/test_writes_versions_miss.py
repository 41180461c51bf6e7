"""Writes to a gradient that its version counter does not tell as a clear: zeroed through `.data`
between the backward and the step (GL005: the step sees nothing), and a clip run only to measure
the norm after the step (GL001: the gradients are still carried over)."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from gradlint.rules import gl001
from gradlint.runtime import events, gradstate, handgrads, judges
from runtime_helpers import REPO, finding_on, tracing
from runtime_loops import batches, mlp

HERE = os.path.realpath(__file__)




def _loss(model, inputs, labels):
    return nn.functional.cross_entropy(model(inputs), labels)


@pytest.mark.parametrize("where", ["between", "before-backward"])
def test_gradients_zeroed_through_data_before_the_step(where):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tracing() as traced:
        for inputs, labels in batches(5):
            if where == "before-backward":
                for param in model.parameters():
                    if param.grad is not None:
                        param.grad.data.zero_()
            _loss(model, inputs, labels).backward()
            if where == "between":
                for param in model.parameters():
                    param.grad.data.zero_()  # clear: through .data
            optimizer.step()
    obs = traced.observations
    verdict, evidence, _ = judges.judge_clear_before_step(finding_on(HERE, "GL005", "# clear: through .data"), obs, REPO)
    dropped = sum(site.count(events.FRESH_DROPPED) for site in obs.sites.values())
    if where == "between":
        # every step but the first: its backward ran before any clear or step made the optimizer's
        # parameters known, so what it wrote was not measured
        assert dropped == 4 and verdict == "confirmed" and "cleared (None or zeroed)" in evidence
    else:
        assert dropped == 0 and verdict == "refuted"


def test_the_zeroed_check_costs_only_an_optimizers_first_steps(monkeypatch):
    calls = []
    original = handgrads.all_zero

    def counted(grad, torch_module):
        calls.append(1)
        return original(grad, torch_module)

    monkeypatch.setattr(handgrads, "all_zero", counted)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tracing():
        for inputs, labels in batches(40):
            optimizer.zero_grad()
            _loss(model, inputs, labels).backward()
            optimizer.step()
    assert len(calls) == gradstate.ZEROED_CHECKED_STEPS  # the first gradient of each is not zero


@pytest.mark.parametrize("clear", [False, True])
def test_a_clip_that_only_measures_the_norm_after_the_step_clears_nothing(clear):
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with tracing() as traced:
        for inputs, labels in batches(6):
            if clear:
                optimizer.zero_grad()
            _loss(model, inputs, labels).backward()
            optimizer.step()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=math.inf)  # logs the norm: multiplies by 1.0
    sites = [s for s in traced.observations.sites.values() if s.kind == "backward"]
    stale = sum(s.stale_steps for s in sites)
    verdict, _ = gl001.judge(sites, REPO)
    if clear:
        assert stale == 0 and verdict == "refuted"
    else:
        assert stale == 5 and verdict == "confirmed"
