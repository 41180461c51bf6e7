"""GL007 at run time: a backward that starts from a loss made a leaf, directly or through a little
arithmetic on it, writes no parameter's gradient; leaves made on purpose (inputs for saliency,
GradCache's representations, a scalar an optimizer trains) are not that."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from gradlint.runtime import events, judges
from runtime_helpers import REPO, finding_on, tracing
from runtime_loops import batches, mlp

HERE = os.path.realpath(__file__)




def _leaf_calls(obs) -> int:
    return sum(site.count(events.LEAF_ROOT) + site.count(events.LEAF_DERIVED) for site in obs.sites.values())


@pytest.mark.parametrize("root", ["leaf", "divided", "scaled", "negated-sum"])
def test_a_backward_through_arithmetic_on_a_leaf_loss_reaches_no_parameter(root):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scale = torch.tensor(1024.0)  # as a GradScaler multiplies the loss
    with tracing() as traced:
        for inputs, labels in batches(4):
            loss = nn.functional.cross_entropy(model(inputs), labels)
            loss = torch.tensor(loss.item(), requires_grad=True)  # leaf: made
            optimizer.zero_grad()
            if root == "leaf":
                loss.backward()
            elif root == "divided":
                (loss / 2).backward()
            elif root == "scaled":
                (loss * scale).backward()
            else:
                torch.stack([-loss, loss / 16]).sum().backward()
            optimizer.step()
    obs = traced.observations
    assert _leaf_calls(obs) == 4
    verdict, evidence, _ = judges.judge_leaf_root(finding_on(HERE, "GL007", "# leaf: made"), obs, REPO)
    assert verdict == "confirmed" and "no parameter received a gradient" in evidence
    # from the run alone only a leaf root itself: arithmetic on a stand-alone scalar may be anything
    assert len(judges.runtime_only_leaf_root(obs, "GL007", set(), REPO)) == (1 if root == "leaf" else 0)
    assert all(p.grad is None for p in model.parameters())


def test_a_leaf_made_on_some_iterations_confirms_the_static_finding_only():
    """The static finding names the leaf: one backward from it is enough. From the run alone a
    site that also trains is left alone (`loss = torch.zeros((), requires_grad=True)` to skip a
    batch is written on purpose)."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tracing() as traced:
        for index, (inputs, labels) in enumerate(batches(6)):
            loss = nn.functional.cross_entropy(model(inputs), labels)
            if index % 2 == 0:
                loss = torch.tensor(loss.item(), requires_grad=True)  # leaf: some iterations
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    obs = traced.observations
    assert _leaf_calls(obs) == 3
    assert judges.judge_leaf_root(finding_on(HERE, "GL007", "# leaf: some iterations"), obs, REPO)[0] == "confirmed"
    assert judges.runtime_only_leaf_root(obs, "GL007", set(), REPO) == []


def test_representations_made_leaves_on_purpose_and_a_trained_scalar_are_not_leaf_losses():
    """GradCache: the loss over representation leaves is backpropagated to them, then their
    gradients are pushed through the encoder; a temperature an optimizer holds is trained."""
    torch.manual_seed(0)
    encoder = nn.Linear(8, 4)
    temperature = nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.SGD([*encoder.parameters(), temperature], lr=0.1)
    with tracing() as traced:
        for _ in range(3):
            queries, keys = torch.randn(6, 8), torch.randn(6, 8)
            with torch.no_grad():
                reps_q, reps_k = encoder(queries), encoder(keys)
            reps_q.requires_grad_()
            reps_k.requires_grad_()
            scores = reps_q @ reps_k.T / temperature
            loss = nn.functional.cross_entropy(scores, torch.arange(6))
            optimizer.zero_grad()
            loss.backward()  # into the representation leaves and the temperature
            encoder(queries).backward(gradient=reps_q.grad)
            encoder(keys).backward(gradient=reps_k.grad)
            optimizer.step()
            scalar = torch.tensor(2.0, requires_grad=True)
            (scalar * 3).backward()  # a one-element leaf no optimizer holds, nothing trains it
            with torch.no_grad():
                reps = encoder(queries)
            reps.requires_grad_()
            reps.pow(2).mean().backward()  # saliency-like: many elements
    obs = traced.observations
    # only the scalar no optimizer holds counts; nothing steps from it, and the sites that
    # train never are leaf losses
    assert _leaf_calls(obs) == 3
    assert [site.where[1] for site in obs.sites.values() if site.count(events.LEAF_DERIVED)] == \
        [finding_on(HERE, "GL007", "(scalar * 3).backward()").line]
    assert judges.runtime_only_leaf_root(obs, "GL007", set(), REPO) == []
