"""GL001 at runtime: clears the version counter cannot see (through `.data`), steps that run their
backward inside (closures), and what the content probes cost correct code."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import gradlint.runtime
from gradlint.runtime import gradstate, probes
from gradlint.rules import gl001
from gradlint.runtime.events import UNSURE_CARRY
from runtime_helpers import REPO, gradlint_run
from runtime_loops import batches, mlp


def _trace():
    return gradlint.runtime.trace(cwd=REPO)


def _backward_sites(traced):
    return [s for s in traced.observations.sites.values() if s.kind == "backward" and s.calls]


def _stale_steps(traced) -> int:
    return sum(o.stale_steps for o in traced.observations.optimizers)


def _verdict(traced):
    return gl001.judge(_backward_sites(traced), REPO)


def _clear(model: nn.Module, how: str) -> None:
    for p in model.parameters():
        if p.grad is None:
            continue
        if how == "data_zero":
            p.grad.data.zero_()
        elif how == "data_assign":
            p.grad.data = torch.zeros_like(p)
        elif how == "data_mul":
            p.grad.data.mul_(0)


def _sgd_loop(how: str, steps: int = 6) -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for inputs, labels in batches(steps):
        nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
        _clear(model, how)


# ------------------------------------------------------------------------------ clears through .data
@pytest.mark.parametrize("how", ["data_zero", "data_assign", "data_mul"])
def test_clearing_through_data_is_not_stale(how):
    with _trace() as traced:
        _sgd_loop(how)
    assert _stale_steps(traced) == 0
    assert not [f for f in traced.confirmed() if f.code == "GL001"]
    # every step was verified to use cleared gradients: the static finding could be refuted
    verdict, evidence = _verdict(traced)
    assert verdict == "refuted", evidence


def test_clearing_through_data_before_the_backward_is_not_stale():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for inputs, labels in batches(6):
            _clear(model, "data_zero")
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
    assert _stale_steps(traced) == 0


def test_missing_clear_is_still_confirmed_and_each_step_counted_once():
    with _trace() as traced:
        _sgd_loop("none", steps=6)
    # the first step has nothing to carry: the other five are stale, each counted once
    assert _stale_steps(traced) == 5
    assert _verdict(traced)[0] == "confirmed"
    (site,) = _backward_sites(traced)
    assert site.stale_params == 6 and site.count(UNSURE_CARRY) == 0


def test_clearing_through_data_only_sometimes_is_confirmed_on_the_steps_it_missed():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for index, (inputs, labels) in enumerate(batches(8)):
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
            if index % 2 == 0:
                _clear(model, "data_zero")
    assert _stale_steps(traced) == 3  # the steps after iterations 1, 3, 5 carried gradients over
    assert _verdict(traced)[0] == "confirmed"


@pytest.mark.parametrize("how", ["none", "data_zero"])
def test_embedding_whose_unused_rows_have_zero_gradients(how):
    """Only the rows a batch looks up get gradients: a probe of the first elements would be all
    zero, the norm of the whole gradient is not."""
    with _trace() as traced:
        torch.manual_seed(0)
        table = nn.Embedding(1000, 8)
        optimizer = torch.optim.SGD(table.parameters(), lr=0.1)
        for step in range(5):
            tokens = torch.tensor([500 + step, 900 - step])
            table(tokens).pow(2).sum().backward()
            optimizer.step()
            _clear(table, how)
    if how == "none":
        assert _stale_steps(traced) == 4
        assert _verdict(traced)[0] == "confirmed"
    else:
        assert _stale_steps(traced) == 0
        assert _verdict(traced)[0] == "refuted"


def test_sparse_embedding_missing_clear_is_confirmed():
    with _trace() as traced:
        torch.manual_seed(0)
        table = nn.Embedding(50, 4, sparse=True)
        optimizer = torch.optim.SGD(table.parameters(), lr=0.1)
        for step in range(4):
            table(torch.tensor([step, step + 1])).sum().backward()
            optimizer.step()
    assert _verdict(traced)[0] == "confirmed"


def test_manual_update_cleared_through_data_is_not_stale():
    for clear in (True, False):
        with _trace() as traced:
            weight = torch.ones(3, requires_grad=True)
            for _ in range(5):
                (weight * torch.arange(3.0)).sum().backward()
                with torch.no_grad():
                    weight -= 0.1 * weight.grad
                if clear:
                    weight.grad.data.zero_()
        manual = sum(s.manual_stale for s in _backward_sites(traced))
        # without the clear every backward after the first re-applies stale gradients (a leaf's
        # first gradient is probed, so even the first carry-over is verified)
        assert manual == (0 if clear else 4), clear


# ------------------------------------------------------------------------------ unsure carry-overs
def test_a_first_carry_over_without_a_probe_is_neither_stale_nor_clean():
    """Cleared by zero_grad (so never probed) until it stops: that first carry-over cannot be told
    from a clear through .data; the next one can."""
    for forgotten, stale, verdict in ((1, 0, "unexercised"), (2, 1, "confirmed")):
        with _trace() as traced:
            model = mlp()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for index, (inputs, labels) in enumerate(batches(4 + forgotten)):
                if index < 4:
                    optimizer.zero_grad()
                nn.functional.cross_entropy(model(inputs), labels).backward()
                optimizer.step()
        assert _stale_steps(traced) == stale
        (site,) = _backward_sites(traced)
        assert site.count(UNSURE_CARRY) == 1
        result, evidence = _verdict(traced)
        assert result == verdict, evidence
        if verdict == "unexercised":
            assert "could not show a carry-over" in evidence


def test_all_zero_gradients_carried_over_are_unsure_not_refuted():
    with _trace() as traced:
        weight = nn.Parameter(torch.ones(3))
        optimizer = torch.optim.SGD([weight], lr=0.1)
        for _ in range(4):
            (weight * 0).sum().backward()
            optimizer.step()
    assert _stale_steps(traced) == 0
    assert _verdict(traced)[0] == "unexercised"


# ------------------------------------------------------------------------------ closures
def _quadratic():
    torch.manual_seed(0)
    return nn.Linear(4, 1), torch.randn(16, 4), torch.randn(16, 1)


@pytest.mark.parametrize("clear", [False, True])
def test_lbfgs_closure(clear):
    with _trace() as traced:
        model, inputs, targets = _quadratic()
        optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)

        def closure():
            if clear:
                optimizer.zero_grad()
            loss = (model(inputs) - targets).pow(2).mean()
            loss.backward()
            return loss

        for _ in range(3):
            optimizer.step(closure)
    (site,) = _backward_sites(traced)
    assert site.steps == 3  # the closure's backward is followed by the step that runs it
    if clear:
        assert _stale_steps(traced) == 0
        assert _verdict(traced)[0] == "refuted"
    else:
        # every step: LBFGS reads the gradients after each evaluation of the closure (up to
        # max_iter per step), and each evaluation after the first adds onto what it read
        assert _stale_steps(traced) == 3
        assert site.stale_steps == 3 and site.stale_optimizers == ["LBFGS"]
        assert _verdict(traced)[0] == "confirmed"


@pytest.mark.parametrize("clear", [False, True])
def test_sgd_step_with_closure(clear):
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(5):
            def closure(inputs=inputs, labels=labels):
                if clear:
                    optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(inputs), labels)
                loss.backward()
                return loss

            optimizer.step(closure)
    assert _stale_steps(traced) == (0 if clear else 4)
    assert _verdict(traced)[0] == ("refuted" if clear else "confirmed")


def test_backward_before_a_closure_step_is_not_counted_twice():
    """A backward outside the step, then a step whose closure runs another: one step, counted
    once, stale once per step."""
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(4):
            nn.functional.cross_entropy(model(inputs), labels).backward()

            def closure(inputs=inputs, labels=labels):
                loss = nn.functional.cross_entropy(model(inputs), labels)
                loss.backward()
                return loss

            optimizer.step(closure)
    stats = traced.observations.optimizers[0]
    assert stats.steps == 4 and stats.stale_steps == 3
    assert all(s.steps == 4 for s in _backward_sites(traced))


# ------------------------------------------------------------------------------ cost on correct code
@pytest.mark.parametrize("set_to_none", [True, False])
def test_correct_loops_take_content_probes_only_at_the_first_step(monkeypatch, set_to_none):
    calls = []
    iteration = [0]
    original = gradstate.norms

    def counted(grads, torch_module):
        calls.append(iteration[0])
        return original(grads, torch_module)

    monkeypatch.setattr(gradstate, "norms", counted)
    with _trace() as traced:
        generator, discriminator = mlp(0), nn.Sequential(nn.Linear(4, 1))
        opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
        for iteration[0], (inputs, _) in enumerate(batches(20)):
            opt_d.zero_grad(set_to_none=set_to_none)
            fake = generator(inputs)
            discriminator(fake.detach()).mean().backward()
            opt_d.step()
            opt_g.zero_grad(set_to_none=set_to_none)
            discriminator(fake).mean().backward()
            opt_g.step()
    assert _stale_steps(traced) == 0
    # Probes: each optimizer's parameters once at its first step (plus, before the first step, the
    # leaves' first gradients: they are in no optimizer yet). And what each backward wrote, measured
    # for a site's first calls only (a step finding it zeroed through `.data`). Then nothing.
    probes = [i for i in calls if i == 0]
    assert len(probes) <= 4 + 2, calls
    assert max(calls) < gradstate.ZEROED_CHECKED_STEPS and len(calls) <= 4 + 2 * gradstate.ZEROED_CHECKED_STEPS


# ------------------------------------------------------------------------------ gradlint run
# The static GL001 findings of legacy_clears.py (each loop's clear is behind a switch): the LBFGS
# step call (line 21) and the SGD loop's backward (line 26); the loop not run stays unexercised.
@pytest.mark.parametrize("args, status, verdicts", [
    ((), 0, {21: "unexercised", 26: "refuted"}),  # cleared through .data, verified at every step
    (("--forget",), 1, {21: "unexercised", 26: "confirmed"}),
    (("--lbfgs",), 0, {21: "refuted", 26: "unexercised"}),  # LBFGS clearing in its closure
    (("--lbfgs", "--forget"), 1, {21: "confirmed", 26: "unexercised"}),  # was refuted: counted in the step
])
def test_gradlint_run_verdicts_and_exit_status(tmp_path, args, status, verdicts):
    report = tmp_path / "report.json"
    done = gradlint_run("--output-format", "json", "-o", str(report), "legacy_clears.py", *args)
    assert done.returncode == status, done.stdout + done.stderr
    found = {f["line"]: f["runtime"] for f in json.loads(report.read_text()) if f["code"] == "GL001"}
    assert found == verdicts


# ------------------------------------------------------------------------------ updates through .data
@pytest.mark.parametrize("how", ["data_add", "data_assign", "data_copy"])
def test_manual_update_through_data_with_stale_gradients_is_seen(how):
    # `.data` keeps the leaf's version counter as it was: the value probe shows the update
    for clear in (False, True):
        with _trace() as traced:
            weight = torch.ones(3, requires_grad=True)
            for _ in range(5):
                (weight * torch.arange(1.0, 4.0)).sum().backward()
                if how == "data_add":
                    weight.data.add_(weight.grad, alpha=-0.1)
                elif how == "data_assign":
                    weight.data = weight.data - 0.1 * weight.grad
                else:
                    weight.data.copy_(weight.data - 0.1 * weight.grad)
                if clear:
                    weight.grad = None
        manual = sum(s.manual_stale for s in _backward_sites(traced))
        loose = sum(s.loose_leaves for s in _backward_sites(traced))
        assert (manual, loose) == ((0, 0) if clear else (4, 0)), (how, clear)


def test_leaves_that_only_accumulate_keep_their_note_and_no_finding():
    with _trace() as traced:  # Fisher information: gradients summed on purpose, values untouched
        weight = torch.ones(3, requires_grad=True)
        for _ in range(4):
            (weight * torch.randn(3)).sum().pow(2).backward()
    sites = _backward_sites(traced)
    assert sum(s.manual_stale for s in sites) == 0 and sum(s.loose_leaves for s in sites) == 1
    assert [f for s in sites for f in gl001.observe(s, REPO, False)] == []


def _teacher_student(update: str, seed: int, distil: bool = False, lr: float = 0.05) -> list:
    """A student trained by SGD and a teacher copy whose output is not detached, so every
    backward writes into the teacher's gradients too; the teacher then changes by `update`
    (`ema`, `ema_lerp`, `copy`, or `sgd`: a hand-written step of `lr` on its own, never cleared,
    gradients). `distil`: the loss pulls the teacher toward the student (a distillation loss on
    their softmax outputs), so its gradients point the way an average toward the student moves
    it, and the signs agree."""
    import copy

    torch.manual_seed(seed)
    width, classes = (6, 8) if distil else (4, 2)
    student = nn.Sequential(nn.Linear(width, 16), nn.ReLU(), nn.Linear(16, classes))
    teacher = copy.deepcopy(student)
    opt = torch.optim.SGD(student.parameters(), lr=0.05)
    with _trace() as traced:
        for _ in range(8):
            x = torch.randn(16, width)
            out, target = student(x), teacher(x + 0.05 * torch.randn_like(x))
            if distil:
                loss = (out.softmax(-1) - target.softmax(-1)).pow(2).sum(-1).mean()
            else:
                loss = nn.functional.mse_loss(out, target)
                loss = loss + nn.functional.cross_entropy(out, torch.randint(0, classes, (16,)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for tp, sp in zip(teacher.parameters(), student.parameters()):
                    if update == "ema":
                        tp.copy_(0.99 * tp + 0.01 * sp)
                    elif update == "ema_lerp":
                        tp.lerp_(sp, 0.05)
                    elif update == "copy":
                        tp.copy_(sp)
                    else:
                        tp.sub_(lr * tp.grad)
    return _backward_sites(traced)


def _manual_update_findings(sites) -> list:
    return [f for s in sites for f in gl001.observe(s, REPO, False)]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("update, distil", [("ema", False), ("copy", False), ("ema", True), ("ema_lerp", True)])
def test_a_teacher_averaged_or_copied_from_the_student_gets_a_note_and_no_finding(update, distil, seed):
    # Its value changes between backwards, but not by a multiple of its own gradients (a mean
    # teacher under a distillation loss moves the way they point, still not in proportion): not read.
    sites = _teacher_student(update, seed, distil)
    assert _manual_update_findings(sites) == []
    assert sum(s.loose_leaves for s in sites) >= 1


@pytest.mark.parametrize("seed, distil, lr", [(0, False, 0.05), (1, False, 0.05), (0, True, 0.05), (0, True, 1e-4)])
def test_a_teacher_stepped_by_hand_on_its_stale_gradients_is_gl001(seed, distil, lr):
    found = _manual_update_findings(_teacher_student("sgd", seed, distil, lr))
    assert len(found) == 1 and "manual update" in found[0][0]


def test_follows_takes_a_multiple_of_the_gradient_not_its_signs_alone():
    grad = torch.tensor([0.5, -1.0, 2.0, -0.25, 1.5, -3.0])
    old = torch.tensor([0.3, -0.2, 0.1, 0.7, -0.4, 0.05])
    assert probes.follows(old, old - 0.01 * grad, grad) is True  # descent
    assert probes.follows(old, old + 0.2 * grad, grad) is True  # ascent
    assert probes.follows(old, old - 0.01 * grad.sign(), grad) is False  # same signs, not in proportion
    assert probes.follows(old, old + 0.01 * grad.flip(0), grad) is False
    assert probes.follows(old[:3], old[:3] - 0.01 * grad[:3], grad[:3]) is None  # too few to tell


# ------------------------------------------------------------------------------ several stale backwards
def _shared_trunk(clear_first: bool) -> tuple:
    torch.manual_seed(0)
    shared = torch.randn(3, requires_grad=True)
    other = torch.randn(3, requires_grad=True)
    opt_a = torch.optim.SGD([shared], lr=0.01)
    opt_b = torch.optim.SGD([other], lr=0.01)
    with _trace() as traced:
        for _ in range(6):
            x = torch.randn(3)
            if clear_first:
                opt_a.zero_grad()
            (shared * x).sum().pow(2).backward()  # line A: opt_a never cleared (unless clear_first)
            opt_a.step()
            opt_b.zero_grad()
            ((shared * other) * x).sum().pow(2).backward()  # line B: also reaches `shared`
            opt_b.step()
    sites = sorted(_backward_sites(traced), key=lambda s: s.where[1])
    return sites[0], sites[1]


def test_every_backward_onto_stale_gradients_before_a_step_is_charged():
    # B adds to what opt_a's step used, then A adds again: opt_a's next step uses both. A (where a
    # static GL001 points) is confirmed; B, only ever followed by A, gets no finding of its own.
    first, second = _shared_trunk(clear_first=False)
    assert first.stale_steps == 5 and second.stale_steps == 5
    assert gl001.judge([first], REPO)[0] == "confirmed"
    assert gl001.observe(first, REPO, False) != []
    assert gl001.observe(second, REPO, False) == []


def test_a_clear_before_the_first_backward_leaves_no_stale_step():
    first, second = _shared_trunk(clear_first=True)
    assert first.stale_steps == 0 and second.stale_steps == 0


def test_an_update_through_data_of_a_large_leaf_is_seen_from_a_sample_of_its_elements():
    with _trace() as traced:
        weight = torch.randn(300, 200).requires_grad_()
        for _ in range(4):
            (weight * 2.0).sum().backward()
            weight.data.add_(weight.grad, alpha=-0.01)  # every element moves; no clear
    assert sum(s.manual_stale for s in _backward_sites(traced)) == 3
