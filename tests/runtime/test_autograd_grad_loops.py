"""Loops whose gradients come from `torch.autograd.grad` (assigned to `.grad` by hand, or applied
by a hand-written update): the graphs they keep past an iteration (GL006) or carry into the next
one (GL008) are judged as a backward's are; an `autograd.grad` beside a backward (a gradient
penalty, a meta-learning inner step) changes nothing."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from gradlint.runtime import events, judges
from runtime_helpers import REPO, finding_on, tracing

HERE = os.path.realpath(__file__)




def _count(obs, name):
    return sum(site.count(name) for site in obs.sites.values())


@pytest.mark.parametrize("store", ["loss", "item"])
def test_a_loss_history_beside_autograd_grad_keeps_graphs(store):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=0.01)
    history = []
    with tracing() as traced:
        for _ in range(8):
            loss = nn.functional.mse_loss(model(torch.randn(6, 4)), torch.randn(6, 1))
            grads = torch.autograd.grad(loss, params)  # grad: the loop's backward
            for param, grad in zip(params, grads):
                param.grad = grad
            optimizer.step()
            history.append(loss if store == "loss" else loss.item())  # store: history
    obs = traced.observations
    verdict, evidence, _ = judges.judge_kept_graph(finding_on(HERE, "GL006", "# store: history"), obs, REPO)
    extra = judges.runtime_only_kept_graph(obs, "GL006", set(), REPO)
    if store == "loss":
        assert verdict == "confirmed" and "still alive two optimizer steps later" in evidence
        assert len(extra) == 1 and extra[0].line == finding_on(HERE, "GL006", "# grad: the loop's backward").line
    else:
        assert verdict == "refuted" and extra == []


@pytest.mark.parametrize("mode", ["carried", "carried-retain", "detached"])
def test_state_carried_into_an_autograd_grad_loop(mode):
    torch.manual_seed(0)
    w_in, w_state, w_out = (0.1 * torch.randn(3, 6)).requires_grad_(), (0.1 * torch.randn(6, 6)).requires_grad_(), \
        (0.1 * torch.randn(6, 1)).requires_grad_()
    params = [w_in, w_state, w_out]
    optimizer = torch.optim.SGD(params, lr=0.05)
    raised = None
    with tracing() as traced:
        hidden = torch.zeros(2, 6)
        try:
            for _ in range(5):
                if mode == "detached":
                    hidden = hidden.detach()
                hidden = torch.tanh(torch.randn(2, 3) @ w_in + hidden @ w_state)
                loss = (hidden @ w_out - torch.randn(2, 1)).pow(2).mean()
                grads = torch.autograd.grad(loss, params, retain_graph=mode == "carried-retain")  # grad: carried
                for param, grad in zip(params, grads):
                    param.grad = grad
                optimizer.step()
        except RuntimeError as error:
            raised = error
    obs = traced.observations
    finding = finding_on(HERE, "GL008", "# grad: carried")
    verdict, evidence, _ = judges.judge_carried_graph(finding, obs, REPO)
    extra = judges.runtime_only_carried_graph(obs, "GL008", set(), REPO)
    if mode == "detached":
        assert raised is None and verdict == "refuted" and extra == []
    elif mode == "carried":
        assert raised is not None and _count(obs, events.SECOND_TIME_AFTER_STEP) == 1
        assert verdict == "confirmed" and "second time" in evidence
        assert [f.line for f in extra] == [finding.line]
    else:  # the retained graph saved the weight the step then updated in place
        assert raised is not None and verdict == "confirmed"


def test_a_gradient_penalty_and_a_meta_learning_inner_step_keep_no_graph():
    """WGAN-GP's `autograd.grad(..., create_graph=True)` and MAML's inner steps walk graphs that
    die with their iteration: nothing kept, nothing carried."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    learner = nn.Linear(4, 1)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    meta_opt = torch.optim.SGD(learner.parameters(), lr=0.01)
    scores = []
    with tracing() as traced:
        for _ in range(6):
            real, fake = torch.randn(8, 4), torch.randn(8, 4)
            mix = (0.5 * real + 0.5 * fake).requires_grad_()
            (slope,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
            penalty = (slope.norm(dim=1) - 1).pow(2).mean()
            critic_loss = critic(fake).mean() - critic(real).mean() + 10 * penalty
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            scores.append(critic_loss.item())

            meta_opt.zero_grad()
            weight, bias = learner.weight, learner.bias
            for _ in range(2):
                inner = nn.functional.mse_loss(nn.functional.linear(torch.randn(5, 4), weight, bias),
                                               torch.randn(5, 1))
                grad_w, grad_b = torch.autograd.grad(inner, (weight, bias), create_graph=True)
                weight, bias = weight - 0.1 * grad_w, bias - 0.1 * grad_b
            outer = nn.functional.mse_loss(nn.functional.linear(torch.randn(5, 4), weight, bias), torch.randn(5, 1))
            outer.backward()
            meta_opt.step()
    obs = traced.observations
    assert obs.internal_errors == 0
    assert judges.runtime_only_kept_graph(obs, "GL006", set(), REPO) == []
    assert judges.runtime_only_carried_graph(obs, "GL008", set(), REPO) == []
    # a store of the scores beside them is judged by the backward nearest to it, whose graphs died
    assert judges.judge_kept_graph(finding_on(HERE, "GL006", "scores.append("), obs, REPO)[0] == "refuted"


def test_a_stored_loss_holding_a_gradient_penalty_is_reported_once_at_its_backward():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
    history = []
    with tracing() as traced:
        for _ in range(6):
            real, fake = torch.randn(8, 4), torch.randn(8, 4)
            mix = (0.5 * real + 0.5 * fake).requires_grad_()
            (slope,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)  # grad: penalty
            loss = critic(fake).mean() - critic(real).mean() + 10 * (slope.norm(dim=1) - 1).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()  # backward: critic
            optimizer.step()
            history.append(loss)  # store: critic loss
    obs = traced.observations
    assert judges.judge_kept_graph(finding_on(HERE, "GL006", "# store: critic loss"), obs, REPO)[0] == "confirmed"
    (found,) = judges.runtime_only_kept_graph(obs, "GL006", set(), REPO)
    assert found.line == finding_on(HERE, "GL006", "# backward: critic").line


@pytest.mark.parametrize("gradients", ["backward", "autograd.grad"])
@pytest.mark.parametrize("store", ["loss", "item"])
def test_a_running_sum_in_a_loop_updated_by_hand(gradients, store):
    """No optimizer, so no step to tell iterations by: the backward's own calls do. Graphs that
    die only when the script ends are no evidence of a clean loop."""
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    params = list(model.parameters())
    running = 0.0
    with tracing() as traced:
        for _ in range(6):
            loss = nn.functional.mse_loss(model(torch.randn(16, 8)), torch.randn(16, 1))
            if gradients == "backward":
                model.zero_grad()
                loss.backward()  # backward: by hand
                grads = [p.grad for p in params]
            else:
                grads = torch.autograd.grad(loss, params)  # backward: by hand
            with torch.no_grad():
                for param, grad in zip(params, grads):
                    param -= 0.05 * grad
            running += loss if store == "loss" else loss.item()  # store: running sum
        del running
    obs = traced.observations
    assert obs.steps == 0
    verdict, evidence, _ = judges.judge_kept_graph(finding_on(HERE, "GL006", "# store: running sum"), obs, REPO)
    if store == "loss":
        assert verdict == "confirmed" and "no optimizer step ran" in evidence
    else:
        assert verdict == "unexercised"
    assert judges.runtime_only_kept_graph(obs, "GL006", set(), REPO) == []  # where nothing steps, nothing is said
