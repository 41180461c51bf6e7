"""The tracer is safe to leave on (results unchanged, nothing kept alive, everything removed, its own
errors swallowed) and judges real training patterns right."""

from __future__ import annotations

import gc
import os
import sys
import weakref

import pytest
import torch
import torch.optim.optimizer as optim_module
from torch import nn

import gradlint.runtime
from gradlint.runtime.frames import CallSites
from gradlint.runtime.tracer import Tracer
from runtime_helpers import REPO, SCRIPTS, run_traced
from runtime_loops import batches, mlp, state_of, train_mlp


def _patched_objects():
    return (torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad,
            torch.optim.Optimizer.zero_grad, torch.nn.Module.zero_grad,
            len(optim_module._global_optimizer_pre_hooks), len(optim_module._global_optimizer_post_hooks))


def _codes(traced, runtime="confirmed"):
    return sorted(f.code for f in traced.findings() if f.runtime == runtime and f.severity != "note")


def _trace(**kwargs):
    return gradlint.runtime.trace(cwd=REPO, **kwargs)


# ------------------------------------------------------------------------------ safety
def test_parameters_bitwise_identical_traced_and_untraced():
    plain = state_of(train_mlp(steps=200))
    with _trace() as traced:
        watched = state_of(train_mlp(steps=200))
    assert traced.observations.steps == 200
    assert all(torch.equal(a, b) for a, b in zip(plain, watched))
    # ... and with a retained graph every step (graph hooks in place).
    plain = state_of(train_mlp(steps=60, retain=True))
    with _trace():
        watched = state_of(train_mlp(steps=60, retain=True))
    assert all(torch.equal(a, b) for a, b in zip(plain, watched))


def _train_and_keep_weakrefs():
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for inputs, labels in batches(5):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), labels)
        loss.backward(retain_graph=True)  # a retained graph carries our node hooks
        optimizer.step()
    return weakref.ref(model), weakref.ref(optimizer), weakref.ref(loss), weakref.ref(model[0].weight.grad)


def test_keeps_no_tensor_or_graph_alive():
    with _trace() as traced:
        refs = _train_and_keep_weakrefs()
        gc.collect()
        assert all(ref() is None for ref in refs), "the tracer keeps training objects alive"
    assert traced.observations.backward_calls == 5
    assert not list(traced.tracer._retained)


def test_memory_flat_with_retained_graphs():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        for index, (inputs, labels) in enumerate(batches(200)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), labels).backward(retain_graph=True)
            optimizer.step()
            if index == 50:
                gc.collect()
                early = len(list(traced.tracer._retained))
        gc.collect()
        late = len(list(traced.tracer._retained))
    assert late <= early + 1  # graphs die with their iteration; nothing accumulates
    assert len(traced.observations.sites) == 1


@pytest.mark.parametrize("ending", ["exit", "exception", "keyboardinterrupt"])
def test_all_patches_and_hooks_removed(ending):
    before = _patched_objects()
    kept = {}
    error = {"exception": ValueError, "keyboardinterrupt": KeyboardInterrupt}.get(ending)
    try:
        with _trace() as traced:
            assert _patched_objects() != before
            model = mlp()
            loss = model(torch.randn(2, 16)).sum()
            loss.backward(retain_graph=True)
            kept["handles"] = [h for record in traced.tracer._retained for h in record.handles]
            if error is not None:
                raise error()
    except (ValueError, KeyboardInterrupt) as raised:
        assert error is not None and isinstance(raised, error)
    assert _patched_objects() == before
    assert kept["handles"], "the retained graph should have been hooked"
    for handle in kept["handles"]:  # node hooks on a graph that outlives the trace are gone too
        hooks = handle.hooks_dict_ref()
        assert hooks is None or handle.id not in hooks
    loss.backward()  # the kept graph still works untraced


def test_internal_error_is_counted_not_raised(monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("tracer bug")

    monkeypatch.setattr(Tracer, "_before_step", broken)
    monkeypatch.setattr(CallSites, "stack", broken)
    plain = state_of(train_mlp(steps=20))
    with _trace() as traced:
        watched = state_of(train_mlp(steps=20))
    assert all(torch.equal(a, b) for a, b in zip(plain, watched))
    assert traced.observations.internal_errors == 40
    assert "tracer bug" in traced.observations.first_error
    assert "internal tracer error" in traced.report()


def test_torch_not_imported_by_package_import():
    import subprocess

    code = ("import sys, gradlint.runtime, gradlint.runtime.cli, gradlint.runtime.pytest_plugin; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------ verdicts
def test_stale_loop_confirmed_and_clean_loop_not():
    with _trace() as traced:
        train_mlp(steps=6, clear=False)
    assert _codes(traced) == ["GL001"]
    with _trace() as traced:
        train_mlp(steps=6, clear=True)
    assert _codes(traced) == []


def test_intentional_accumulation_is_not_stale():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for index, (inputs, labels) in enumerate(batches(12)):
            (nn.functional.cross_entropy(model(inputs), labels) / 4).backward()
            if index % 4 == 3:
                optimizer.step()
                optimizer.zero_grad(set_to_none=False)  # zeroed in place, not dropped
    assert _codes(traced) == []
    assert traced.observations.steps == 3


def test_manual_clears_are_judged_from_grad_state():
    for clear in ("none", "zero_"):
        with _trace() as traced:
            model = mlp()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for inputs, labels in batches(5):
                nn.functional.cross_entropy(model(inputs), labels).backward()
                optimizer.step()
                for p in model.parameters():
                    if clear == "none":
                        p.grad = None
                    else:
                        p.grad.zero_()
        assert _codes(traced) == [], clear


def test_retain_graph_reused_is_refuted_with_the_line():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, _ in batches(3):
            optimizer.zero_grad()
            hidden = model[:2](inputs)
            first = model[2:](hidden).logsumexp(1).mean()
            first.backward(retain_graph=True)
            second = hidden.pow(2).mean()  # runs the retained layers again
            second.backward()
            optimizer.step()
    sites = [s for s in traced.observations.sites.values() if s.retained]
    assert len(sites) == 1 and sites[0].retained == 3 and sites[0].retained_reused >= 1
    reuser = sites[0].reused_by[0]
    assert reuser[0] == os.path.realpath(__file__)
    assert "second.backward()" in open(__file__).read().splitlines()[reuser[1] - 1]
    assert "GL002" not in _codes(traced)


def _weighted_backward(loss, weight):
    (weight * loss).backward(retain_graph=True)  # one line, two call paths below


def test_retain_graph_needed_on_one_call_path_of_a_helper_is_not_reported():
    """Two losses on one trunk backpropagated through the same helper: the first call's retained
    graph is run by the second call's backward, so the helper's `retain_graph=True` is needed
    (dropping it raises "backward through the graph a second time"), though the second call's own
    graph is never run again. The line is one: nothing to report on it."""
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(3):
            optimizer.zero_grad()
            hidden = model[:2](inputs).relu()
            _weighted_backward(nn.functional.cross_entropy(model[2:](hidden), labels), 1.0)
            _weighted_backward(hidden.pow(2).mean(), 0.1)
            optimizer.step()
    sites = [s for s in traced.observations.sites.values() if s.retained]
    assert len(sites) == 2 and sum(bool(s.retained_reused) for s in sites) == 1  # one path reused, one not
    assert "GL002" not in _codes(traced)


def test_retain_graph_never_reused_on_any_call_path_of_a_helper_is_confirmed():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(3):
            optimizer.zero_grad()
            _weighted_backward(nn.functional.cross_entropy(model(inputs), labels), 1.0)
            _weighted_backward(model(inputs).pow(2).mean(), 0.1)
            optimizer.step()
    assert _codes(traced) == ["GL002"]


def test_retain_graph_never_reused_is_confirmed():
    with _trace() as traced:
        train_mlp(steps=4, retain=True)
    assert _codes(traced) == ["GL002"]


def _retain_for_an_optional_second_backward(option: str) -> None:
    """retain_graph=True kept for a second backward that runs only when a config option asks."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for inputs, labels in batches(3):
        features = model(inputs)
        optimizer.zero_grad()
        nn.functional.cross_entropy(features, labels).backward(retain_graph=True)
        if option == "aux":
            features.abs().mean().backward()
        elif option == "input-grad":
            torch.autograd.grad(features.pow(2).sum(), model[0].weight)
        optimizer.step()


def _retain_beside_a_backward_on_another_graph() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for inputs, labels in batches(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward(retain_graph=True)
        model(inputs).pow(2).mean().backward()  # a new forward: never runs the retained graph
        optimizer.step()


@pytest.mark.parametrize("option", ["off", "aux", "input-grad"])
def test_retain_graph_kept_for_a_backward_the_run_may_not_take_is_not_confirmed(option):
    """Off, the branch that may need the graph never ran: this run cannot tell, so nothing is
    said (not confirmed); on, it ran the graph again (refuted)."""
    with _trace() as traced:
        _retain_for_an_optional_second_backward(option)
    assert _codes(traced) == []


def test_retain_graph_beside_a_backward_that_ran_on_another_graph_is_confirmed():
    with _trace() as traced:
        _retain_beside_a_backward_on_another_graph()
    assert _codes(traced) == ["GL002"]


def test_nonscalar_backward_seen_before_torch_raises():
    with _trace() as traced:
        out = mlp()(torch.randn(3, 16))
        with pytest.raises(RuntimeError, match="scalar"):
            out.backward()
        torch.autograd.backward(out, grad_tensors=torch.ones_like(out))  # fine: a gradient is given
    assert _codes(traced) == ["GL003"]
    finding = next(f for f in traced.findings() if f.code == "GL003")
    assert "(3, 4)" in finding.evidence and finding.static is False


def test_multiple_optimizers_only_the_uncleared_one_is_stale():
    with _trace() as traced:
        model = mlp()
        first = torch.optim.SGD(list(model[0].parameters()), lr=0.01)
        rest = torch.optim.Adam([p for layer in model[1:] for p in layer.parameters()], lr=0.01)
        for inputs, labels in batches(4):
            first.zero_grad()
            nn.functional.cross_entropy(model(inputs), labels).backward()
            first.step()
            rest.step()
    stats = {o.name: o for o in traced.observations.optimizers}
    assert stats["SGD"].stale_steps == 0 and stats["Adam"].stale_steps == 3
    finding = next(f for f in traced.confirmed() if f.code == "GL001")
    assert "Adam" in finding.evidence and "SGD" not in finding.evidence


@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing(reentrant):
    from torch.utils.checkpoint import checkpoint

    for clear in (True, False):
        with _trace() as traced:
            model = mlp()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for inputs, labels in batches(4):
                if clear:
                    optimizer.zero_grad()
                hidden = checkpoint(model[:3], inputs.requires_grad_(), use_reentrant=reentrant)
                nn.functional.cross_entropy(model[3:](hidden), labels).backward()
                optimizer.step()
        assert traced.observations.internal_errors == 0
        assert traced.observations.backward_calls == 4  # the reentrant inner backward is folded in
        assert _codes(traced) == ([] if clear else ["GL001"])


def test_grad_scaler():
    for clear in (True, False):
        with _trace() as traced:
            model = mlp()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            scaler = torch.amp.GradScaler("cpu")
            for inputs, labels in batches(4):
                if clear:
                    optimizer.zero_grad()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = nn.functional.cross_entropy(model(inputs), labels)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
        assert traced.observations.steps == 4
        assert _codes(traced) == ([] if clear else ["GL001"])


def test_dataloader_workers():
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.randn(32, 16), torch.randint(0, 4, (32,)))
    for clear in (True, False):
        with _trace() as traced:
            model = mlp()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for inputs, labels in DataLoader(data, batch_size=8, num_workers=2):
                if clear:
                    optimizer.zero_grad()
                nn.functional.cross_entropy(model(inputs), labels).backward()
                optimizer.step()
        assert traced.observations.steps == 4
        assert _codes(traced) == ([] if clear else ["GL001"])


def test_torch_compile_backward_while_compiling_is_ignored():
    model = mlp()
    compiled = torch.compile(model, backend="aot_eager")  # AOTAutograd calls autograd.grad inside
    for clear in (True, False):
        with _trace() as traced:
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for inputs, labels in batches(3):
                if clear:
                    optimizer.zero_grad()
                nn.functional.cross_entropy(compiled(inputs), labels).backward()
                optimizer.step()
        assert traced.observations.internal_errors == 0
        assert traced.observations.backward_calls == 3  # only the user's, none from compiling
        assert [s.kind for s in traced.observations.sites.values()] == ["backward"]
        assert _codes(traced) == ([] if clear else ["GL001"])


def test_leaves_in_no_optimizer_get_a_note_that_is_not_a_finding():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model[4].parameters(), lr=0.01)  # forgot the other layers
        for inputs, labels in batches(4):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
    assert traced.confirmed() == [] and not [f for f in traced.findings() if f.severity == "note" or not f.static]
    assert "note: 4 leaf tensors in no optimizer accumulated gradients" in traced.report()


def test_gan_pattern_generator_backward_into_discriminator_is_fine():
    torch.manual_seed(0)
    gen, disc = nn.Linear(4, 8), nn.Linear(8, 1)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    with _trace() as traced:
        for _ in range(4):
            fake = gen(torch.randn(6, 4))
            opt_d.zero_grad()
            (disc(fake.detach()).mean() - disc(torch.randn(6, 8)).mean()).backward()
            opt_d.step()
            opt_g.zero_grad()
            (-disc(fake).mean()).backward()  # also writes into the discriminator's used gradients
            opt_g.step()
    assert _codes(traced) == []


def test_traced_scripts_report_paths_relative_to_cwd():
    traced = run_traced(os.path.join(SCRIPTS, "stale_loop.py"))
    (finding,) = traced.confirmed()
    assert finding.path == "tests/runtime/scripts/stale_loop.py"
    assert finding.code == "GL001" and finding.line == 26
    assert finding.to_json()["runtime"] == "confirmed"


def test_retained_graphs_are_sampled_after_many_unreused_ones_but_reuse_is_still_seen():
    with _trace() as traced:
        model = mlp()
        for index, (inputs, _) in enumerate(batches(160)):
            hidden = model[:2](inputs)
            loss = model[2:](hidden).logsumexp(1).mean()
            loss.backward(retain_graph=True)
            if index >= 120:  # from here on every retained graph is run again
                hidden.sum().backward()
    (site,) = [s for s in traced.observations.sites.values() if s.retained]
    assert site.retained == 160 and 64 < site.retained_watched < 160
    assert site.retained_reused >= 1
    assert "GL002" not in _codes(traced)
