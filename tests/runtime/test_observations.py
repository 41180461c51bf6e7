"""GL001 without an optimizer, helpers in other modules, threads, and the observations the newer
rules' runtime judges read (clipping, clears before the step, kept graphs, leaf roots, carried
graphs)."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch import nn

import gradlint.runtime
from gradlint.findings import Finding
from gradlint.runtime import events, judges
from runtime_helpers import REPO, SCRIPTS, gradlint_run, run_traced
from runtime_loops import batches, mlp

HERE = os.path.realpath(__file__)


def _trace():
    return gradlint.runtime.trace(cwd=REPO)


def _codes(traced):
    return sorted(f.code for f in traced.findings() if f.runtime == "confirmed" and f.severity != "note")


def _count(obs, name, store="sites"):
    return sum(site.count(name) for site in getattr(obs, store).values())


def _line_of(text: str) -> int:
    """Line in this file of the first line containing `text` (after this function)."""
    lines = open(HERE).read().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line and "_line_of(" not in line)


def _finding(code: str, text: str) -> Finding:
    line = _line_of(text)
    return Finding(code=code, message="m", path=os.path.relpath(HERE, REPO), line=line, column=1,
                   end_line=line, end_column=80)


# ------------------------------------------------------------------------------ GL001 needs a step
def test_saliency_maps_get_no_gl001():
    with _trace() as traced:
        model = mlp()
        for inputs, _ in batches(4):
            image = inputs[:1].clone().requires_grad_()
            model(image).max().backward()  # the model's parameters accumulate too: never stepped
            saliency = image.grad.abs()
    assert saliency.shape == (1, 16)
    # nothing confirmed and nothing runtime-only (the static findings of this file's deliberately
    # buggy manual-update tests below stay, unexercised here)
    assert _codes(traced) == [] and [f for f in traced.findings() if not f.static] == []


def test_fisher_information_accumulating_on_purpose_gets_no_gl001():
    with _trace() as traced:
        model = mlp()
        for inputs, labels in batches(5):
            nn.functional.cross_entropy(model(inputs), labels).backward()
        fisher = [p.grad.pow(2) for p in model.parameters()]
    assert len(fisher) == 6 and _codes(traced) == []


def test_backward_twice_with_explicit_gradient_then_reading_grad_gets_no_gl001():
    with _trace() as traced:
        x = torch.ones(3, requires_grad=True)
        y = x * 2
        y.backward(gradient=torch.ones(3), retain_graph=True)
        y.backward(gradient=torch.full((3,), 0.5))
        total = x.grad.clone()
    assert torch.equal(total, torch.full((3,), 3.0))
    assert "GL001" not in _codes(traced)


def test_manual_sgd_without_clearing_is_gl001_and_with_clearing_is_not():
    for clear in (False, True):
        with _trace() as traced:
            model = mlp()
            for inputs, labels in batches(4):
                nn.functional.cross_entropy(model(inputs), labels).backward()
                with torch.no_grad():
                    for p in model.parameters():
                        p -= 0.01 * p.grad
                        if clear:
                            p.grad = None
        assert _codes(traced) == ([] if clear else ["GL001"]), clear
    if True:  # the stale run's evidence names the manual update
        with _trace() as traced:
            w = torch.zeros(3, requires_grad=True)
            for _ in range(3):
                (w - 1).pow(2).sum().backward()
                with torch.no_grad():
                    w -= 0.1 * w.grad
        (finding,) = traced.confirmed()
        # the static GL001 (manual updates are steps) is confirmed with the manual-update evidence
        assert finding.code == "GL001" and "manual step" in finding.evidence and finding.static is True


# ------------------------------------------------------------------------------ helpers in other modules
@pytest.mark.parametrize("argv", [(), ("--epoch",)])
def test_helper_in_another_module_running_backward_and_step_is_confirmed(argv, monkeypatch):
    monkeypatch.syspath_prepend(SCRIPTS)
    traced = run_traced(os.path.join(SCRIPTS, "helper_loop.py"), argv)
    confirmed = [f for f in traced.confirmed() if f.code == "GL001"]
    assert confirmed, traced.findings()
    # A static finding on a helper loop that did not run stays unexercised; none is refuted.
    assert all(f.runtime in ("confirmed", "unexercised") for f in traced.findings() if f.code == "GL001")
    # Reported in the project (the helper or the loop's call site), never in a library.
    assert all(f.path.startswith("tests/runtime/scripts/") for f in confirmed)


# ------------------------------------------------------------------------------ threads
def test_four_threads_training_their_own_models_ten_rounds():
    done = gradlint_run_threads()
    lines = [line for line in done.stdout.splitlines() if line.startswith("round=")]
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(lines) == 10
    for line in lines:
        assert "backward=100 steps=100 threads=4 errors=0 optimizers=4 stale=[0] confirmed=[]" in line, line


def test_threads_one_stale_thread_is_confirmed_and_counted_alone():
    done = gradlint_run_threads("--stale", "2")
    lines = [line for line in done.stdout.splitlines() if line.startswith("round=")]
    assert done.returncode == 0, done.stderr[-2000:]
    for line in lines:
        assert "backward=100 steps=100 threads=4 errors=0 optimizers=4 stale=[0, 24] confirmed=['GL001']" in line, line


def gradlint_run_threads(*args):
    import subprocess

    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "threads_train.py", *args], cwd=SCRIPTS, env=env, capture_output=True,
                          text=True, timeout=300)


# ------------------------------------------------------------------------------ clipping
def _amp_loop(order: str, steps: int = 4, enabled: bool = True):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", enabled=enabled)
    for inputs, labels in batches(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), labels)
        scaler.scale(loss).backward()
        if order == "unscale-clip":
            scaler.unscale_(optimizer)
        if order != "clip-after-step":
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # clip: scaled?
        scaler.step(optimizer)
        if order == "clip-after-step":
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # clip: after the step
        scaler.update()


def test_clip_on_scaled_gradients_is_observed_and_judged():
    with _trace() as traced:
        _amp_loop("clip")
    obs = traced.observations
    assert _count(obs, events.CLIP_ON_SCALED, "call_sites") == 4
    finding = _finding("GL004", "nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # clip: scaled?")
    verdict, evidence, sites = judges.judge_clip(finding, obs, REPO)
    assert verdict == "confirmed" and "still scaled" in evidence and sites
    assert judges.runtime_only_clip(obs, "GL004", {id(s) for s in sites}, REPO) == []
    (extra,) = judges.runtime_only_clip(obs, "GL004", set(), REPO)
    assert extra.line == finding.line and extra.static is False


@pytest.mark.parametrize("order,enabled", [("unscale-clip", True), ("clip", False)])
def test_clip_after_unscale_or_without_an_enabled_scaler_is_refuted(order, enabled):
    with _trace() as traced:
        _amp_loop(order, enabled=enabled)
    obs = traced.observations
    assert _count(obs, events.CLIP_ON_SCALED, "call_sites") == 0
    assert _count(obs, events.CLIP_USED, "call_sites") == 4
    finding = _finding("GL004", "nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # clip: scaled?")
    assert judges.judge_clip(finding, obs, REPO)[0] == "refuted"


def test_clip_after_the_step_is_wasted():
    with _trace() as traced:
        _amp_loop("clip-after-step")
    obs = traced.observations
    assert _count(obs, events.CLIP_WASTED, "call_sites") == 3  # the last one is never followed by anything
    finding = _finding("GL004", "nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # clip: after the step")
    verdict, evidence, _ = judges.judge_clip(finding, obs, REPO)
    assert verdict == "confirmed" and "before any optimizer step used them" in evidence


@pytest.mark.skipif(not hasattr(nn.utils, "clip_grads_with_norm_"), reason="torch < 2.6 has no clip_grads_with_norm_")
@pytest.mark.parametrize("order", ["clip", "clip-after-step", "unscale-clip"])
def test_clip_by_a_precomputed_total_norm_is_observed(order):
    # `get_total_norm` then `clip_grads_with_norm_`: the clip torch >= 2.6 splits in two
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for inputs, labels in batches(4):
            optimizer.zero_grad()
            scaler.scale(nn.functional.cross_entropy(model(inputs), labels)).backward()
            if order == "unscale-clip":
                scaler.unscale_(optimizer)
            total = nn.utils.get_total_norm([p.grad for p in model.parameters()])
            if order != "clip-after-step":
                nn.utils.clip_grads_with_norm_(model.parameters(), 1.0, total)
            scaler.step(optimizer)
            if order == "clip-after-step":
                nn.utils.clip_grads_with_norm_(model.parameters(), 1.0, total)
            scaler.update()
    obs = traced.observations
    expected = {"clip": (4, 4, 0), "clip-after-step": (0, 0, 3), "unscale-clip": (0, 4, 0)}[order]
    assert (_count(obs, events.CLIP_ON_SCALED, "call_sites"), _count(obs, events.CLIP_USED, "call_sites"),
            _count(obs, events.CLIP_WASTED, "call_sites")) == expected


def test_clip_with_infinite_norm_only_measures():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(3):
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
            nn.utils.clip_grad_norm_((p for p in model.parameters()), float("inf"))  # logs the norm
            optimizer.zero_grad()
    assert traced.observations.call_sites == {} or _count(traced.observations, events.CLIP_CALLS, "call_sites") == 0


# ------------------------------------------------------------------------------ clears before the step
def test_clear_between_backward_and_step_is_observed():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(4):
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.zero_grad()  # clear: before the step
            optimizer.step()
    obs = traced.observations
    assert _count(obs, events.CLEAR_BEFORE_STEP, "call_sites") == 4
    finding = _finding("GL005", "optimizer.zero_grad()  # clear: before the step")
    verdict, evidence, sites = judges.judge_clear_before_step(finding, obs, REPO)
    assert verdict == "confirmed" and sites
    (extra,) = judges.runtime_only_clear_before_step(obs, "GL005", set(), REPO)
    assert extra.line == finding.line


def test_a_clear_before_the_step_or_a_forgotten_clear_between_clean_steps_is_each_counted():
    """Clean steps let the step hook skip its scan of the parameters (nothing marked or charged
    since); a clear before one step, then a forgotten clear before another, must still be seen, and
    the clean steps around them must count as clean."""
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for index, (inputs, labels) in enumerate(batches(12)):
            if index not in (6, 7):  # forgotten twice: steps 6 and 7 keep what the step before used
                optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), labels).backward()
            if index == 3:
                optimizer.zero_grad()  # clear: dropped once
            optimizer.step()
    obs = traced.observations
    assert _count(obs, events.CLEAR_BEFORE_STEP, "call_sites") == 1
    # Step 6 is unsure (no content probe was taken yet: a clear through `.data` cannot be ruled
    # out); the parameters are probed from then on, so step 7 is stale.
    assert _count(obs, events.UNSURE_CARRY) == 1
    assert [o.stale_steps for o in obs.optimizers] == [1]
    assert [o.steps for o in obs.optimizers] == [12]


# ------------------------------------------------------------------------------ step closures
def _closure_loop(optimizer_class, order: str, **options):
    """`optimizer.step(closure)` three times; `order` places the clear in or around the closure."""
    model = mlp()
    optimizer = optimizer_class(model.parameters(), **options)
    inputs, labels = next(iter(batches(1)))

    def closure():
        if order == "clear-first":
            optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), labels)
        loss.backward()
        if order == "clear-after-backward":
            optimizer.zero_grad()  # clear: in the closure, after its backward
        elif order == "clear-then-assign":
            grads = [p.grad.clone() for p in model.parameters()]
            optimizer.zero_grad()
            for param, grad in zip(model.parameters(), grads):
                param.grad = grad  # what the optimizer reads: assigned after the clear
        return loss

    for _ in range(3):
        if order == "clear-outside":
            optimizer.zero_grad()
        optimizer.step(closure)


@pytest.mark.parametrize("optimizer_class, options", [
    (torch.optim.LBFGS, {"lr": 0.1, "max_iter": 3}), (torch.optim.SGD, {"lr": 0.01}),
])
def test_a_closure_that_clears_after_its_backward_hands_the_step_nothing(optimizer_class, options):
    with _trace() as traced:
        _closure_loop(optimizer_class, "clear-after-backward", **options)
    obs = traced.observations
    assert _count(obs, events.CLEAR_BEFORE_STEP, "call_sites") >= 3
    finding = _finding("GL005", "optimizer.zero_grad()  # clear: in the closure, after its backward")
    assert judges.judge_clear_before_step(finding, obs, REPO)[0] == "confirmed"
    (extra,) = judges.runtime_only_clear_before_step(obs, "GL005", set(), REPO)
    assert extra.line == finding.line


@pytest.mark.parametrize("order", ["clear-first", "clear-then-assign"])
@pytest.mark.parametrize("optimizer_class, options", [
    (torch.optim.LBFGS, {"lr": 0.1, "max_iter": 3}), (torch.optim.SGD, {"lr": 0.01}),
])
def test_closures_that_hand_the_step_their_gradients_are_clean(optimizer_class, options, order):
    with _trace() as traced:
        _closure_loop(optimizer_class, order, **options)
    obs = traced.observations
    assert _count(obs, events.CLEAR_BEFORE_STEP, "call_sites") == 0
    assert sum(site.stale_steps for site in obs.sites.values()) == 0


def test_lbfgs_under_a_clear_written_outside_its_closure_reads_stale_gradients():
    # zero_grad() before step(closure) clears once per step; LBFGS evaluates the closure up to
    # max_iter times and reads the gradients after each: every evaluation after the first adds on
    with _trace() as traced:
        _closure_loop(torch.optim.LBFGS, "clear-outside", lr=0.1, max_iter=3)
    (site,) = [site for site in traced.observations.sites.values() if site.calls]
    assert site.stale_steps == 3 and site.stale_optimizers == ["LBFGS"]
    with _trace() as traced:  # SGD evaluates its closure once per step: nothing carried over
        _closure_loop(torch.optim.SGD, "clear-outside", lr=0.01)
    assert sum(site.stale_steps for site in traced.observations.sites.values()) == 0


def test_a_step_that_clears_between_its_own_reads_is_clean():
    # sharpness-aware minimisation: the step reads the gradients, clears them itself, evaluates the
    # closure for new ones and reads those: no clear after the closure's backward
    class TwoReads(torch.optim.SGD):
        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for param in group["params"]:
                    param.add_(param.grad, alpha=0.01)
            self.zero_grad()
            with torch.enable_grad():
                closure()
            return super().step()

    with _trace() as traced:
        model = mlp()
        optimizer = TwoReads(model.parameters(), lr=0.01)
        for inputs, labels in batches(3):
            def closure(inputs=inputs, labels=labels):
                loss = nn.functional.cross_entropy(model(inputs), labels)
                loss.backward()
                return loss

            optimizer.zero_grad()
            closure()
            optimizer.step(closure)
    obs = traced.observations
    assert _count(obs, events.CLEAR_BEFORE_STEP, "call_sites") == 0
    assert sum(site.stale_steps for site in obs.sites.values()) == 0


def test_unconditional_clear_before_an_accumulation_gated_step_is_confirmed_when_joined():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for index, (inputs, labels) in enumerate(batches(8)):
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.zero_grad()  # clear: gated step
            if index % 4 == 3:
                optimizer.step()
    finding = _finding("GL005", "optimizer.zero_grad()  # clear: gated step")
    assert judges.judge_clear_before_step(finding, traced.observations, REPO)[0] == "confirmed"


def test_gan_probe_and_normal_loops_drop_nothing_before_a_step():
    with _trace() as traced:
        gen, disc = nn.Linear(4, 8), nn.Linear(8, 1)
        opt_g, opt_d = torch.optim.Adam(gen.parameters()), torch.optim.Adam(disc.parameters())
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(4):
            fake = gen(torch.randn(6, 4))
            opt_d.zero_grad()
            disc(fake.detach()).mean().backward()
            opt_d.step()
            opt_g.zero_grad()  # clear: gan generator
            (-disc(fake).mean()).backward()
            opt_g.step()
            # probe: gradient norms of a first loss, read and cleared, then the real backward
            nn.functional.cross_entropy(model(inputs), labels).backward()
            norms = [p.grad.norm() for p in model.parameters()]
            optimizer.zero_grad()  # clear: probe
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
            optimizer.zero_grad()
    obs = traced.observations
    assert norms and _count(obs, events.CLEAR_BEFORE_STEP, "call_sites") == 0
    assert judges.runtime_only_clear_before_step(obs, "GL005", set(), REPO) == []
    finding = _finding("GL005", "opt_g.zero_grad()  # clear: gan generator")
    assert judges.judge_clear_before_step(finding, obs, REPO)[0] == "refuted"


# ------------------------------------------------------------------------------ graphs kept alive
@pytest.mark.parametrize("keep", ["sum", "append", "item", "detach"])
def test_loss_history_keeping_graphs(keep):
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        history, running = [], 0.0
        for inputs, labels in batches(8):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()  # backward: loss history
            optimizer.step()
            if keep == "sum":
                running += loss  # keep: history
            elif keep == "append":
                history.append(loss)
            elif keep == "item":
                running += loss.item()
            else:
                history.append(loss.detach())
    obs = traced.observations
    kept = _count(obs, events.KEPT_GRAPH)
    finding = _finding("GL006", "running += loss  # keep: history")
    verdict = judges.judge_kept_graph(finding, obs, REPO)[0]
    if keep in ("sum", "append"):
        assert kept >= 4 and verdict == "confirmed" and _count(obs, events.KEPT_AT_ONCE) >= 4
        assert judges.runtime_only_kept_graph(obs, "GL006", set(), REPO)
    else:
        assert kept == 0 and verdict == "refuted"
        assert judges.runtime_only_kept_graph(obs, "GL006", set(), REPO) == []


@pytest.mark.parametrize("seed", range(4))
def test_the_best_loss_so_far_keeps_one_graph_at_a_time_and_no_runtime_finding(seed):
    torch.manual_seed(seed)
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        best = None
        for inputs, labels in batches(12):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), labels) * (1.0 if len(labels) else 0.0)
            loss.backward()
            optimizer.step()
            if best is None or loss < best:
                best = loss  # a plain reassignment: one graph kept at a time
    obs = traced.observations
    assert _count(obs, events.KEPT_AT_ONCE) <= 1
    assert judges.runtime_only_kept_graph(obs, "GL006", set(), REPO) == []


@pytest.mark.parametrize("keep", ["logits", "component", "logits-detached", "component-item", "nothing"])
def test_outputs_and_component_losses_kept_across_iterations(keep):
    """What a store keeps is often not the backward's root: the model's output, or one term of a
    summed loss. Their nodes outlive the root's; a store of detached values or numbers keeps none."""
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        features = torch.tanh(torch.randn(4, 16))  # no history: built once
        outputs, meters = [], {"cls": 0.0}
        for inputs, labels in batches(8):
            logits = model(inputs + features.sum() * 0)
            cls_loss = nn.functional.cross_entropy(logits, labels)
            loss = cls_loss + logits.pow(2).mean() * 0.01
            optimizer.zero_grad()
            loss.backward()  # backward: outputs kept
            optimizer.step()
            if keep == "logits":
                outputs.append(logits)
            elif keep == "component":
                meters["cls"] += cls_loss
            elif keep == "logits-detached":
                outputs.append(logits.detach())
            elif keep == "component-item":
                meters["cls"] += cls_loss.item()
    obs = traced.observations
    finding = _finding("GL006", "loss.backward()  # backward: outputs kept")
    verdict, evidence, _ = judges.judge_kept_graph(finding, obs, REPO)
    assert _count(obs, events.KEPT_GRAPH) == 0  # the root itself is freed each time
    found = judges.runtime_only_kept_graph(obs, "GL006", set(), REPO)
    if keep in ("logits", "component"):
        assert _count(obs, events.KEPT_UPSTREAM) >= 4 and verdict == "confirmed" and "still alive" in evidence
        # without a static finding on the store (one in another module, say): reported at the backward
        assert [f.line for f in found] == [finding.line]
    else:
        assert _count(obs, events.KEPT_UPSTREAM) == 0 and verdict == "refuted" and found == []


def test_a_graph_built_once_before_the_loop_keeps_no_iterations_graph():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        source = torch.randn(4, 16, requires_grad=True)
        features = torch.tanh(source * 2)  # made before the loop: alive throughout, on purpose
        for inputs, labels in batches(8):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs + features.mean()), labels).backward(retain_graph=True)
            optimizer.step()
    assert _count(traced.observations, events.KEPT_UPSTREAM) == 0


@pytest.mark.parametrize("losses_per_step", [3, 4, 6])
def test_several_backward_calls_per_step_keep_no_graph_past_the_step(losses_per_step):
    """Task losses on a shared trunk (or micro-batches kept until the step for logging), each
    backpropagated at one line: their graphs live until the step, however many there are."""
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(6):
            optimizer.zero_grad()
            hidden = model[:2](inputs)
            losses = [nn.functional.cross_entropy(model[2:](hidden * (k + 1)), labels)
                      for k in range(losses_per_step)]
            for k, loss in enumerate(losses):
                loss.backward(retain_graph=k < losses_per_step - 1)
            optimizer.step()
    obs = traced.observations
    assert _count(obs, events.KEPT_GRAPH) == 0
    assert judges.runtime_only_kept_graph(obs, "GL006", set(), REPO) == []


@pytest.mark.parametrize("kept", [False, True])
def test_lbfgs_closure_losses_are_the_optimizers_until_the_step_ends(kept):
    """LBFGS keeps the first closure call's loss until step() returns, across several closure
    backward calls: not the user's history. A list the user fills with the losses is."""
    history = []
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.LBFGS(model.parameters(), max_iter=5)
        inputs, labels = next(iter(batches(1)))

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()
            if kept:
                history.append(loss)
            return loss

        for _ in range(4):
            optimizer.step(closure)
        plain = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(6):  # plain steps after: losses kept in the list are still alive
            plain.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()
            plain.step()
            if kept:
                history.append(loss)
    obs = traced.observations
    found = judges.runtime_only_kept_graph(obs, "GL006", set(), REPO)
    assert bool(found) is kept


# ------------------------------------------------------------------------------ loss made a leaf
@pytest.mark.parametrize("leaf", [True, False])
def test_loss_made_leaf(leaf):
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, labels in batches(3):
            optimizer.zero_grad()
            with torch.no_grad():
                loss = nn.functional.cross_entropy(model(inputs), labels)
            if leaf:
                loss = torch.tensor(loss.item(), requires_grad=True)  # leaf: made
            else:
                loss = nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
    obs = traced.observations
    finding = _finding("GL007", "loss = torch.tensor(loss.item(), requires_grad=True)  # leaf: made")
    verdict, evidence, _ = judges.judge_leaf_root(finding, obs, REPO)
    extra = judges.runtime_only_leaf_root(obs, "GL007", set(), REPO)
    if leaf:
        assert _count(obs, events.LEAF_ROOT) == 3 and verdict == "confirmed" and "no parameter" in evidence
        assert len(extra) == 1
    else:
        assert _count(obs, events.LEAF_ROOT) == 0 and verdict == "refuted" and extra == []


def test_saliency_input_leaf_is_not_a_leaf_root():
    with _trace() as traced:
        model = mlp()
        image = torch.randn(1, 16, requires_grad=True)
        model(image).sum().backward()
    assert _count(traced.observations, events.LEAF_ROOT) == 0


# ------------------------------------------------------------------------------ graphs carried across iterations
@pytest.mark.parametrize("mode", ["carried", "carried-retain", "detached"])
def test_hidden_state_carried_across_iterations(mode):
    torch.manual_seed(0)
    cell = nn.RNNCell(4, 8)
    head = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(list(cell.parameters()) + list(head.parameters()), lr=0.01)
    raised = None
    with _trace() as traced:
        hidden = torch.zeros(2, 8)
        try:
            for _ in range(3):
                if mode == "detached":
                    hidden = hidden.detach()
                optimizer.zero_grad()
                hidden = cell(torch.randn(2, 4), hidden)
                loss = head(hidden).pow(2).mean()
                loss.backward(retain_graph=mode == "carried-retain")  # backward: carried
                optimizer.step()
        except RuntimeError as error:
            raised = error
    obs = traced.observations
    finding = _finding("GL008", "loss.backward(retain_graph=mode == \"carried-retain\")  # backward: carried")
    verdict, evidence, _ = judges.judge_carried_graph(finding, obs, REPO)
    extra = judges.runtime_only_carried_graph(obs, "GL008", set(), REPO)
    if mode == "detached":
        assert raised is None and verdict == "refuted" and extra == []
    elif mode == "carried":
        assert raised is not None and _count(obs, events.SECOND_TIME_AFTER_STEP) == 1
        assert verdict == "confirmed" and "second time" in evidence and extra[0].severity == "error"
    else:
        assert _count(obs, events.CARRIED_REUSE) >= 1
        assert verdict == "confirmed" and extra[0].severity == "warning"


@pytest.mark.parametrize("carry", ["running-sum", "decayed-average", "history-list"])
def test_a_carried_root_is_the_carried_graph_rule_not_a_loss_history(carry):
    """A backward on a running sum (or decayed average) of the losses with retain_graph=True keeps
    every iteration's graph alive because the next one runs through it: GL008's, reported once, not
    again as a runtime-only loss history. A list of the losses beside a per-iteration backward is
    the history rule's."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.01)
    inputs = torch.randn(4, 3)
    with _trace() as traced:
        total = torch.zeros(())
        history = []
        for _ in range(6):
            step_loss = layer(inputs + 0.1 * torch.randn_like(inputs)).pow(2).mean()
            optimizer.zero_grad()
            if carry == "history-list":
                history.append(step_loss)
                step_loss.backward()  # backward: per iteration
            else:
                total = total + step_loss if carry == "running-sum" else 0.9 * total + 0.1 * step_loss
                total.backward(retain_graph=True)  # backward: carried root
            optimizer.step()
    obs = traced.observations
    kept = judges.runtime_only_kept_graph(obs, "GL006", set(), REPO)
    carried = judges.runtime_only_carried_graph(obs, "GL008", set(), REPO)
    if carry == "history-list":
        assert [f.line for f in kept] == [_line_of("step_loss.backward()  # backward: per iteration")]
        assert carried == []
    else:
        assert [f.line for f in carried] == [_line_of("total.backward(retain_graph=True)  # backward: carried root")]
        assert kept == []


@pytest.mark.parametrize("cell_kind", ["lstm", "linear"])
def test_carried_state_whose_old_graph_saved_stepped_weights_is_confirmed_by_its_crash(cell_kind):
    """retain_graph=True and state carried without detach: the second backward runs into the first
    iteration's graph, whose saved weights the step has updated in place; autograd raises
    "modified by an inplace operation" (not "a second time")."""
    torch.manual_seed(0)
    cell = nn.LSTM(3, 6) if cell_kind == "lstm" else nn.Linear(6, 6)
    head = nn.Linear(6, 1)
    optimizer = torch.optim.SGD(list(cell.parameters()) + list(head.parameters()), lr=0.01)
    raised = None
    with _trace() as traced:
        state = (torch.zeros(1, 1, 6), torch.zeros(1, 1, 6)) if cell_kind == "lstm" else torch.zeros(2, 6)
        try:
            for _ in range(4):
                if cell_kind == "lstm":
                    out, state = cell(torch.randn(4, 1, 3), state)
                    last = out[-1]
                else:
                    state = torch.tanh(cell(state + torch.randn(2, 6)))
                    last = state
                loss = head(last).pow(2).mean()
                optimizer.zero_grad()
                loss.backward(retain_graph=True)  # backward: stepped weights
                optimizer.step()
        except RuntimeError as error:
            raised = error
    assert raised is not None and "inplace operation" in str(raised)
    obs = traced.observations
    assert _count(obs, events.INPLACE_AFTER_STEP) == 1
    finding = _finding("GL008", "loss.backward(retain_graph=True)  # backward: stepped weights")
    verdict, evidence, _ = judges.judge_carried_graph(finding, obs, REPO)
    assert verdict == "confirmed"
    if cell_kind == "lstm":  # the crash is the only sign (the linear chain's retained hooks fire first)
        assert "modified by an inplace operation" in evidence
        assert judges.runtime_only_carried_graph(obs, "GL008", set(), REPO) == []  # alone, it could be another write


@pytest.mark.parametrize("from_iteration", [0, 2])
def test_an_inplace_error_on_an_activation_is_not_carried_state(from_iteration):
    """An in-place write inside one iteration (an activation changed after use) fails on the
    first call that makes it, after steps or not: no earlier graph is involved (the error names
    an op's output, not a weight), and a crashed backward refutes nothing either."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    raised = None
    with _trace() as traced:
        try:
            for index, (inputs, _) in enumerate(batches(4)):
                optimizer.zero_grad()
                hidden = torch.sigmoid(model[0](inputs))
                loss = model[2:](hidden).pow(2).mean()
                if index >= from_iteration:
                    hidden.mul_(2.0)  # sigmoid saved its output
                loss.backward(retain_graph=True)  # backward: same iteration
                optimizer.step()
        except RuntimeError as error:
            raised = error
    assert raised is not None and "inplace operation" in str(raised)
    obs = traced.observations
    assert _count(obs, events.INPLACE_AFTER_STEP) == 0 and _count(obs, events.BACKWARD_FAILED) == 1
    finding = _finding("GL008", "loss.backward(retain_graph=True)  # backward: same iteration")
    verdict, _, _ = judges.judge_carried_graph(finding, obs, REPO)
    assert verdict == "unexercised"


@pytest.mark.parametrize("iterations", [2, 3, 6])
def test_a_graph_built_once_before_the_loop_is_not_carried_state(iterations):
    """`h` is computed once, before the loop, and every iteration backpropagates through it with
    retain_graph=True: the same graph every time, not state produced from its previous value."""
    with _trace() as traced:
        features = torch.tanh(torch.randn(2, 16, requires_grad=True))  # built once
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(iterations):
            optimizer.zero_grad()
            model(features).pow(2).mean().backward(retain_graph=True)
            optimizer.step()
    obs = traced.observations
    assert _count(obs, events.CARRIED_REUSE) == 0
    assert judges.runtime_only_carried_graph(obs, "GL008", set(), REPO) == []


@pytest.mark.parametrize("epochs, minibatches", [(2, 3), (3, 2), (4, 5)])
def test_a_graph_built_once_per_epoch_and_reused_by_its_steps_is_not_carried_state(epochs, minibatches):
    """`emb` is computed once per epoch, and each of the epoch's steps backpropagates through its
    own slice of it with retain_graph=True: each epoch's first steps re-run a graph retained
    before a step, but no iteration's graph comes from the previous iteration's."""
    torch.manual_seed(0)
    encoder = nn.Linear(6, 4)
    features = torch.randn(minibatches * 5, 6)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.01)
    with _trace() as traced:
        for _ in range(epochs):
            emb = torch.tanh(encoder(features))  # built once per epoch
            for start in range(0, minibatches * 5, 5):
                optimizer.zero_grad()
                emb[start:start + 5].pow(2).mean().backward(retain_graph=True)  # backward: per epoch
                optimizer.step()
    obs = traced.observations
    assert _count(obs, events.CARRIED_REUSE) >= 1  # seen, and judged not to be carried state
    assert judges.runtime_only_carried_graph(obs, "GL008", set(), REPO) == []
    finding = _finding("GL008", "emb[start:start + 5].pow(2).mean().backward(retain_graph=True)  # backward: per epoch")
    verdict, _, _ = judges.judge_carried_graph(finding, obs, REPO)
    assert verdict == "unexercised"


@pytest.mark.parametrize("iterations", [3, 12, 80])
def test_state_carried_through_many_iterations_with_retained_graphs_stays_confirmed(iterations):
    # The step changes only `weight`, which no node of the chain saved (the inputs do not require
    # grad), so every backward runs through the whole history without an error: the graph grows.
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(4, 8) * 0.1)
    optimizer = torch.optim.SGD([weight], lr=0.001)
    with _trace() as traced:
        hidden = torch.zeros(2, 8)
        for _ in range(iterations):
            optimizer.zero_grad()
            hidden = torch.tanh(hidden + torch.randn(2, 4) @ weight)
            hidden.pow(2).mean().backward(retain_graph=True)
            optimizer.step()
    (extra,) = judges.runtime_only_carried_graph(traced.observations, "GL008", set(), REPO)
    assert "carries its graph" in extra.evidence


def test_two_losses_sharing_a_trunk_are_not_a_carried_graph():
    with _trace() as traced:
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for inputs, _ in batches(3):
            optimizer.zero_grad()
            hidden = model[:2](inputs)
            for head_loss in (model[2:](hidden).logsumexp(1).mean(), hidden.pow(2).mean()):
                head_loss.backward(retain_graph=True)
            optimizer.step()
    obs = traced.observations
    assert _count(obs, events.CARRIED_REUSE) == 0 and _count(obs, events.SECOND_TIME) == 0
    assert judges.runtime_only_carried_graph(obs, "GL008", set(), REPO) == []


def test_observations_round_trip_through_json_and_merge():
    with _trace() as traced:
        _amp_loop("clip")
    obs = traced.observations
    again = events.Observations.from_json(obs.to_json())
    assert _count(again, events.CLIP_ON_SCALED, "call_sites") == 4
    again.merge(events.Observations.from_json(obs.to_json()))
    assert _count(again, events.CLIP_ON_SCALED, "call_sites") == 8 and again.ranks == 2


def test_gradlint_run_reports_the_helper_loop(tmp_path):
    report = tmp_path / "r.json"
    done = gradlint_run("--output-format", "json", "-o", str(report), "helper_loop.py")
    assert done.returncode == 1, done.stderr
    import json

    codes = [f["code"] for f in json.loads(report.read_text()) if f["runtime"] == "confirmed"]
    assert "GL001" in codes
