"""Runtime evidence that no wrapped call shows: gradients cleared by hand per parameter before the
step (GL005), graphs kept by stores outside the loop's function (GL006: a module's forward, a
forward hook), and clipped gradients read by hand before a step on hand-assigned ones (GL004)."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import gradlint.runtime
from gradlint.findings import Finding
from gradlint.runtime import events, judges
from runtime_helpers import REPO
from runtime_loops import batches, mlp

HERE = os.path.realpath(__file__)


def _trace():
    return gradlint.runtime.trace(cwd=REPO)


def _count(obs, name, store="sites"):
    return sum(site.count(name) for site in getattr(obs, store).values())


def _finding(code: str, text: str) -> Finding:
    """A static finding of `code` on the first line of this file holding `text`."""
    lines = open(HERE).read().splitlines()
    line = next(i for i, source in enumerate(lines, 1) if text in source and "_finding(" not in source)
    return Finding(code=code, message="m", path=os.path.relpath(HERE, REPO), line=line, column=1,
                   end_line=line, end_column=80)


def _loss(model, inputs, labels):
    return nn.functional.cross_entropy(model(inputs), labels)


# ------------------------------------------------------------------------------ GL005 by hand
@pytest.mark.parametrize("how", ["none-list", "none-named", "zero-inplace", "zeros-assigned"])
def test_gradients_cleared_by_hand_between_backward_and_step_are_confirmed(how):
    with _trace() as traced:
        model = mlp()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.RMSprop(params, lr=1e-3)
        for inputs, labels in batches(5):
            optimizer.zero_grad()
            _loss(model, inputs, labels).backward()
            if how == "none-list":
                for p in params:
                    p.grad = None  # clear: by hand
            elif how == "none-named":
                for _, p in model.named_parameters():
                    p.grad = None
            elif how == "zero-inplace":
                for p in model.parameters():
                    p.grad.zero_()
            else:
                for p in model.parameters():
                    p.grad = torch.zeros_like(p)
            optimizer.step()
    obs = traced.observations
    assert _count(obs, events.FRESH_DROPPED) == 5
    verdict, evidence, sites = judges.judge_clear_before_step(_finding("GL005", "# clear: by hand"), obs, REPO)
    assert verdict == "confirmed" and "5 optimizer steps" in evidence and sites
    # joined to the static finding, nothing more; without one, reported at the backward (the clear
    # by hand calls nothing the tracer can place)
    assert judges.runtime_only_clear_before_step(obs, "GL005", {id(s) for s in sites}, REPO) == []
    (alone,) = judges.runtime_only_clear_before_step(obs, "GL005", set(), REPO)
    assert alone.line == sites[0].where[1]


def test_a_clear_by_hand_on_every_micro_batch_before_a_gated_step_is_seen():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for index, (inputs, labels) in enumerate(batches(8)):
            _loss(model, inputs, labels).backward()
            for p in model.parameters():
                p.grad = None
            if index % 4 == 3:
                optimizer.step()
    assert _count(traced.observations, events.FRESH_DROPPED) == 2


@pytest.mark.parametrize("how", ["none", "zero"])
def test_a_clear_by_hand_at_the_top_of_every_micro_batch_is_confirmed(how):
    """Accumulation over four micro-batches, cleared by hand on each: every step sees only the
    last one. The next backward finds what the previous one wrote cleared, unused by any step."""
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for index, (inputs, labels) in enumerate(batches(12)):
            for p in model.parameters():
                if how == "none":
                    p.grad = None  # clear: every micro-batch
                elif p.grad is not None:
                    p.grad.zero_()
            (_loss(model, inputs, labels) / 4).backward()
            if index % 4 == 3:
                optimizer.step()
    obs = traced.observations
    # 3 per step after the first (until a step, the optimizer's parameters are not known as such)
    assert _count(obs, events.FRESH_CLEARED) == 6 and _count(obs, events.FRESH_DROPPED) == 0
    finding = _finding("GL005", "# clear: every micro-batch")
    verdict, evidence, _ = judges.judge_clear_before_step(finding, obs, REPO)
    assert verdict == "confirmed" and "6 times" in evidence


def _clean_loop(how: str) -> None:
    """Loops that clear by hand and still step on what their backward produced."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for index, (inputs, labels) in enumerate(batches(8)):
        if how == "top":
            for p in model.parameters():
                p.grad = None  # clear: at the top
        if how == "nan-skip":
            loss = _loss(model, inputs, labels) * (float("nan") if index == 2 else 1.0)
            loss.backward()
            if not torch.isfinite(loss):
                for p in model.parameters():
                    p.grad = None
                continue
            optimizer.step()
            for p in model.parameters():
                p.grad = None
            continue
        if how == "sam":  # two passes: the first pass's gradients perturb the weights, then go
            _loss(model, inputs, labels).backward()
            with torch.no_grad():
                shifts = [0.05 * p.grad / (p.grad.norm() + 1e-12) for p in model.parameters()]
                for p, shift in zip(model.parameters(), shifts):
                    p.add_(shift)
            for p in model.parameters():
                p.grad = None
            _loss(model, inputs, labels).backward()
            with torch.no_grad():
                for p, shift in zip(model.parameters(), shifts):
                    p.sub_(shift)
            optimizer.step()
            for p in model.parameters():
                p.grad = None
            continue
        if how == "scaled":  # changed in place, not cleared: an average over workers, say
            _loss(model, inputs, labels).backward()
            for p in model.parameters():
                p.grad.mul_(0.5)
            optimizer.step()
            optimizer.zero_grad()
            continue
        if how == "clip-zero":  # a clip (even of all-zero gradients) is no clear
            (model(inputs).sum() * 0).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            continue
        _loss(model, inputs, labels).backward()
        if how == "accumulate":
            if index % 4 == 3:
                optimizer.step()
                for p in model.parameters():
                    p.grad = None
            continue
        optimizer.step()


@pytest.mark.parametrize("how", ["top", "nan-skip", "sam", "scaled", "clip-zero", "accumulate"])
def test_clears_by_hand_that_keep_the_steps_gradients_drop_nothing(how):
    with _trace() as traced:
        _clean_loop(how)
    obs = traced.observations
    assert _count(obs, events.FRESH_DROPPED) == 0
    if how not in ("nan-skip", "sam"):  # those drop gradients no step needs (a skipped batch; the first pass)
        assert _count(obs, events.FRESH_CLEARED) == 0
    if how == "top":  # a static finding there would be refuted: the steps used what backward wrote
        verdict, _, _ = judges.judge_clear_before_step(_finding("GL005", "# clear: at the top"), obs, REPO)
        assert verdict == "refuted"


def test_gan_discriminator_cleared_by_hand_before_its_own_backward_drops_nothing():
    """The generator's backward writes into the discriminator's gradients; those are cleared by
    hand before the discriminator's own backward and step: nothing its step needed was lost."""
    with _trace() as traced:
        gen, disc = nn.Linear(4, 8), nn.Linear(8, 1)
        opt_g, opt_d = torch.optim.Adam(gen.parameters()), torch.optim.Adam(disc.parameters())
        for _ in range(5):
            for p in gen.parameters():
                p.grad = None
            fake = gen(torch.randn(6, 4))
            (-disc(fake).mean()).backward()  # writes into disc's gradients too
            opt_g.step()
            for p in disc.parameters():
                p.grad = None
            disc(fake.detach()).mean().backward()
            opt_d.step()
    assert _count(traced.observations, events.FRESH_DROPPED) == 0


def test_gradients_assigned_by_hand_after_per_sample_clears_drop_nothing():
    """DP-SGD: per-sample clear, backward and clip, summed by hand; the step uses the average
    assigned to `.grad`, not what the last sample's backward wrote."""
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(4):
            summed = [torch.zeros_like(p) for p in model.parameters()]
            for row in range(4):
                model.zero_grad()
                _loss(model, inputs[row:row + 1], labels[row:row + 1]).backward()
                nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                for total, p in zip(summed, model.parameters()):
                    total += p.grad
            for total, p in zip(summed, model.parameters()):
                p.grad = total / 4
            optimizer.step()
    assert _count(traced.observations, events.FRESH_DROPPED) == 0


# ------------------------------------------------------------------------------ GL006: stores outside the loop
class _Attention(nn.Module):
    """Keeps what `store` says of each forward: its attention map (softmax six nodes from the
    loss) or output, all of them or the latest, with or without history."""

    def __init__(self, store: str) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.store = store
        self.maps: list = []
        self.last = None

    def forward(self, x):
        attn = (self.q(x) @ self.k(x).transpose(-1, -2) / 8 ** 0.5).softmax(-1)
        out = (attn @ self.v(x)).mean(1)
        if self.store == "maps":
            self.maps.append(attn)
        elif self.store == "outputs":
            self.maps.append(out)
        elif self.store == "maps-detached":
            self.maps.append(attn.detach())
        elif self.store == "latest":
            self.last = out
        return out


def _hooked_mlp(where: int, keep: str, bank: list, latest: dict) -> nn.Module:
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))

    def hook(module, inputs, output):
        if keep == "append":
            bank.append(output)
        elif keep == "overwrite":
            latest["out"] = output
            bank.append(output.detach().mean(0))

    model[where].register_forward_hook(hook)
    return model


def _train(model, steps: int = 10, extra=None) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        x = torch.randn(4, 5, 8) if isinstance(model, _Attention) else torch.randn(16, 6)
        out = model(x)
        loss = nn.functional.mse_loss(out, torch.zeros_like(out))
        if extra is not None:
            loss = loss + extra()
        optimizer.zero_grad()
        loss.backward()  # backward: stores elsewhere
        optimizer.step()


@pytest.mark.parametrize("store", ["maps", "outputs", "hook-last", "hook-relu"])
def test_graphs_kept_by_a_forward_or_a_hook_are_reported_at_the_backward(store):
    bank: list = []
    with _trace() as traced:
        if store.startswith("hook"):
            _train(_hooked_mlp(2 if store == "hook-last" else 1, "append", bank, {}))
        else:
            _train(_Attention(store))
    obs = traced.observations
    assert _count(obs, events.KEPT_UPSTREAM_AT_ONCE) >= 2
    (found,) = judges.runtime_only_kept_graph(obs, "GL006", set(), REPO)
    assert found.line == _finding("GL006", "# backward: stores elsewhere").line and not found.static
    assert "still alive" in (found.evidence or "")


@pytest.mark.parametrize("store, kept_at_once", [("append", True), ("overwrite", False)])
def test_a_store_that_starts_late_in_a_long_run_is_still_seen(store, kept_at_once):
    # past the first 64 backward calls the nodes upstream of the root are watched on a sample of
    # calls only: a forward hook that starts keeping outputs at call 100 is still caught
    bank: list = []
    latest: dict = {}
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1
        if calls[0] > 100:
            if store == "append":
                bank.append(output)
            else:
                latest["out"] = output

    model[1].register_forward_hook(hook)
    with _trace() as traced:
        _train(model, steps=300)
    obs = traced.observations
    assert (_count(obs, events.KEPT_UPSTREAM_AT_ONCE) >= 2) is kept_at_once
    assert bool(judges.runtime_only_kept_graph(obs, "GL006", set(), REPO)) is kept_at_once


@pytest.mark.parametrize("store", ["maps-detached", "latest", "hook-overwrite", "best-output", "last-batch",
                                   "every-4th"])
def test_one_graph_kept_at_a_time_or_none_is_not_reported(store):
    bank: list = []
    latest: dict = {}
    kept: dict = {}
    with _trace() as traced:
        if store == "hook-overwrite":
            _train(_hooked_mlp(1, "overwrite", bank, latest), extra=lambda: 1e-4 * latest["out"].pow(2).mean())
        elif store in ("best-output", "last-batch", "every-4th"):
            model = mlp()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for index, (inputs, labels) in enumerate(batches(12)):
                logits = model(inputs)
                loss = nn.functional.cross_entropy(logits, labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if store == "every-4th":
                    if index % 4 == 0:  # a snapshot that outlives several steps, one at a time
                        kept.update(loss=loss, logits=logits)
                elif store == "last-batch" or "loss" not in kept or loss < kept["loss"]:
                    kept.update(loss=loss, logits=logits)  # the latest (or best) with its graph
        else:
            _train(_Attention(store))
    obs = traced.observations
    assert _count(obs, events.KEPT_UPSTREAM_AT_ONCE) <= 1
    if store == "every-4th":  # kept past their iteration, but never two at once
        assert _count(obs, events.KEPT_UPSTREAM) >= 2
    assert judges.runtime_only_kept_graph(obs, "GL006", set(), REPO) == []


def test_nodes_kept_by_state_carried_into_the_next_graph_are_left_to_the_carried_graph_rule():
    """`h = 0.9 * h + x @ w` without detaching: each graph reaches into the previous iteration's,
    which keeps its nodes alive with no store at all (GL008's finding, not a history)."""
    with _trace() as traced:
        weight = nn.Parameter(torch.randn(3, 6) * 0.1)
        head = nn.Linear(6, 1)
        optimizer = torch.optim.SGD([weight, *head.parameters()], lr=0.01)
        hidden = torch.zeros(4, 6)
        for _ in range(8):
            hidden = 0.9 * hidden + torch.randn(4, 3) @ weight
            loss = head(torch.tanh(hidden)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward(retain_graph=True)
            optimizer.step()
    obs = traced.observations
    assert _count(obs, events.KEPT_UPSTREAM_AT_ONCE) >= 2 and _count(obs, events.CARRIED_REUSE) >= 2
    assert judges.runtime_only_kept_graph(obs, "GL006", set(), REPO) == []
    assert judges.runtime_only_carried_graph(obs, "GL008", set(), REPO)



# ------------------------------------------------------------------------------ GL004: clipped, then read by hand
def _clipped_loop(how: str) -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for inputs, labels in batches(4):
        if how in ("dp-sgd", "dp-sgd-cleared"):  # per-sample clip, summed by hand, averaged into .grad
            summed = [torch.zeros_like(p) for p in model.parameters()]
            for row in range(4):
                model.zero_grad()
                _loss(model, inputs[row:row + 1], labels[row:row + 1]).backward()
                nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # clip: per sample
                for total, p in zip(summed, model.parameters()):
                    total += p.grad
            if how == "dp-sgd-cleared":
                optimizer.zero_grad()
            for total, p in zip(summed, model.parameters()):
                p.grad = total / 4
            optimizer.step()
        elif how == "noise":  # clipped, then noised in place: the step uses the clipped gradients
            optimizer.zero_grad()
            _loss(model, inputs, labels).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # clip: then noise
            for p in model.parameters():
                p.grad.add_(0.01 * torch.randn_like(p))
            optimizer.step()
        elif how == "zero-grad-between":
            _loss(model, inputs, labels).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # clip: cleared before the step
            optimizer.zero_grad()
            optimizer.step()
        else:  # "before-backward": clips the zeros left by the last clear, not this batch's gradients
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # clip: before the backward
            _loss(model, inputs, labels).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)


@pytest.mark.parametrize("how,text", [("dp-sgd", "# clip: per sample"), ("dp-sgd-cleared", "# clip: per sample"),
                                      ("noise", "# clip: then noise")])
def test_clipped_gradients_read_before_a_step_on_gradients_assigned_by_hand_are_not_confirmed(how, text):
    with _trace() as traced:
        _clipped_loop(how)
    obs = traced.observations
    assert _count(obs, events.CLIP_BEFORE_ASSIGNED, "call_sites") >= 3
    assert judges.runtime_only_clip(obs, "GL004", set(), REPO) == []
    assert judges.judge_clip(_finding("GL004", text), obs, REPO)[0] != "confirmed"
    # the per-sample clears dropped gradients, but the step used the average assigned after them
    assert _count(obs, events.CLEAR_BEFORE_STEP, "call_sites") == 0
    assert judges.runtime_only_clear_before_step(obs, "GL005", set(), REPO) == []


@pytest.mark.parametrize("how,text", [("zero-grad-between", "# clip: cleared before the step"),
                                      ("before-backward", "# clip: before the backward")])
def test_clipped_gradients_that_never_reach_a_step_stay_confirmed(how, text):
    with _trace() as traced:
        _clipped_loop(how)
    obs = traced.observations
    assert _count(obs, events.CLIP_BEFORE_ASSIGNED, "call_sites") == 0
    verdict, evidence, _ = judges.judge_clip(_finding("GL004", text), obs, REPO)
    assert verdict == "confirmed" and "before any optimizer step used them" in evidence
    (found,) = judges.runtime_only_clip(obs, "GL004", set(), REPO)
    assert found.line == _finding("GL004", text).line
