"""GL003 nonscalar-backward: realistic flagged and clean code.

Lines that must be reported carry a `# GL003` comment; every other line must stay clean, and GL002
must not fire on any of them.
"""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from harness import lint_options
from gradlint.analysis.names import ImportMap
from gradlint.analysis.scalars import Shape, backward_shapes

CODES = ("GL002", "GL003")


def _lint(source: str):
    return lint_options(source, "train.py", codes=list(CODES))


def _marked(source: str):
    return [(n, "GL003") for n, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# GL003")]


FLAGGED = {
    "hardest_k_of_per_element_losses": """
        import torch.nn.functional as F
        from torch.utils.data import DataLoader

        for x, y in DataLoader(ds, batch_size=64):
            per = F.mse_loss(model(x), y, reduction="none")
            per.topk(8).values.backward()  # GL003
            per.topk(k=4)[0].backward()  # GL003
            per.sort(descending=True).values.backward()  # GL003
            per.cumsum(0).backward()  # GL003
            per.flip(0).backward()  # GL003
    """,
    "criterion_reduction_none": """
        import torch
        from torch import nn

        criterion = nn.MSELoss(reduction="none")
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()  # GL003
            optimizer.step()
    """,
    "functional_mse_none": """
        import torch.nn.functional as F

        def step(model, x, y, opt):
            opt.zero_grad()
            loss = F.mse_loss(model(x), y, reduction='none')
            loss.backward()  # GL003
            opt.step()
    """,
    "per_sample_cross_entropy": """
        import torch
        import torch.nn.functional as F

        for images, labels in train_loader:
            logits = net(images)
            per_sample = F.cross_entropy(logits, labels, reduction="none")
            optimizer.zero_grad()
            per_sample.backward()  # GL003
            optimizer.step()
    """,
    "bce_with_logits_none": """
        from torch.nn import functional as F

        loss = F.binary_cross_entropy_with_logits(scores, targets, reduction="none")
        loss.backward()  # GL003
    """,
    "criterion_reduce_false": """
        import torch.nn as nn

        bce = nn.BCELoss(reduce=False)
        out = torch.sigmoid(model(x))
        loss = bce(out, y)
        loss.backward()  # GL003
    """,
    "self_criterion_from_init": """
        import torch
        from torch import nn

        class Regressor(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Linear(8, 1)
                self.crit = nn.SmoothL1Loss(reduction="none")

            def fit_batch(self, x, y, opt):
                opt.zero_grad()
                loss = self.crit(self.net(x), y)
                loss.backward()  # GL003
                opt.step()
    """,
    "module_criterion_in_function": """
        import torch.nn as nn

        loss_fn = nn.CrossEntropyLoss(reduction="none")

        def train(model, loader, opt):
            for x, y in loader:
                loss = loss_fn(model(x), y)
                opt.zero_grad()
                loss.backward()  # GL003
                opt.step()
    """,
    "criterion_passed_to_train_function": """
        import torch.nn as nn

        def train(model, loader, criterion, optimizer):
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()  # GL003
                optimizer.step()

        def main():
            model = build_model()
            criterion = nn.CrossEntropyLoss(reduction="none")
            optimizer = make_optimizer(model)
            for epoch in range(10):
                train(model, loader, criterion, optimizer)

        main()
    """,
    "sum_over_one_dim": """
        import torch

        x = torch.randn(32, 10)
        w = torch.randn(10, 4, requires_grad=True)
        scores = x @ w
        loss = scores.pow(2).sum(dim=1)
        loss.backward()  # GL003
    """,
    "mean_positional_dim": """
        import torch

        pred = torch.randn(16, 3, requires_grad=True)
        target = torch.zeros(16, 3)
        err = ((pred - target) ** 2).mean(1)
        err.backward()  # GL003
    """,
    "torch_sum_dim0": """
        import torch

        def column_loss(n, m):
            a = torch.rand(n, m, requires_grad=True)
            col = torch.sum(a * 2, dim=0)
            col.backward()  # GL003
    """,
    "ones_vector": """
        import torch

        x = torch.ones(3, requires_grad=True)
        y = x * 2
        y.backward()  # GL003
    """,
    "eye_matrix": """
        import torch

        w = torch.eye(4, requires_grad=True)
        (w @ w).backward()  # GL003
    """,
    "randn_exp": """
        import torch

        z = torch.randn(2, 3, requires_grad=True)
        z.exp().backward()  # GL003
    """,
    "tensor_literal": """
        import torch

        v = torch.tensor([1.0, 2.0], requires_grad=True)
        out = v ** 2 + 1
        out.backward()  # GL003
    """,
    "weighted_by_mean_precedence": """
        import torch.nn.functional as F

        per_sample = F.cross_entropy(logits, labels, reduction="none")
        loss = per_sample * weights.mean()
        loss.backward()  # GL003
    """,
    "plus_scalar_regulariser": """
        import torch.nn.functional as F

        data_term = F.l1_loss(pred, target, reduction="none")
        loss = data_term + 1e-4 * sum(p.pow(2).sum() for p in model.parameters())
        loss.backward()  # GL003
    """,
    "autograd_grad_without_grad_outputs": """
        import torch
        import torch.nn.functional as F

        losses = F.mse_loss(model(x), y, reduction="none")
        grads = torch.autograd.grad(losses, model.parameters())  # GL003
    """,
    "autograd_backward_function": """
        import torch
        import torch.nn.functional as F

        loss = F.nll_loss(log_probs, target, reduction="none")
        torch.autograd.backward(loss)  # GL003
    """,
    "accelerate_backward": """
        import torch.nn.functional as F

        for batch in loader:
            outputs = model(batch["x"])
            loss = F.cross_entropy(outputs, batch["y"], reduction="none")
            accelerator.backward(loss)  # GL003
            optimizer.step()
            optimizer.zero_grad()
    """,
    "lightning_manual_backward": """
        import torch
        import lightning as L

        class Model(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.loss = torch.nn.MSELoss(reduction="none")

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                x, y = batch
                loss = self.loss(self.layer(x), y)
                opt.zero_grad()
                self.manual_backward(loss)  # GL003
                opt.step()
    """,
    "amp_scaled": """
        import torch
        import torch.nn.functional as F

        for x, y in loader:
            with torch.autocast("cuda"):
                loss = F.mse_loss(model(x), y, reduction="none")
            scaler.scale(loss).backward()  # GL003
            scaler.step(optimizer)
            scaler.update()
    """,
    "stacked_losses": """
        import torch

        total = torch.stack([loss_a, loss_b])
        total.backward()  # GL003
    """,
    "masked_in_place": """
        import torch.nn as nn

        crit = nn.MSELoss(reduction="none")
        loss = crit(out, target)
        loss *= mask
        loss.backward()  # GL003
    """,
    "zeros_with_variable_sizes_reduced_on_one_dim": """
        import torch

        def objective(batch_size, dim):
            w = torch.zeros(batch_size, dim, requires_grad=True)
            obj = (w + 1).sum(dim=-1)
            obj.backward()  # GL003
    """,
    "per_sample_sum_over_features": """
        import torch.nn.functional as F

        per_elem = F.mse_loss(model(x), y, reduction="none")
        per_sample = per_elem.sum(dim=1)
        per_sample.backward()  # GL003
    """,
    "view_then_mean_dim": """
        import torch

        x = torch.randn(8, 4, 4, requires_grad=True)
        y = x.view(8, -1).mean(dim=1)
        y.backward()  # GL003
    """,
}

CLEAN = {
    "hardest_k_then_reduced_or_a_single_one": """
        import torch.nn.functional as F
        from torch.utils.data import DataLoader

        for x, y in DataLoader(ds, batch_size=64):
            per = F.mse_loss(model(x), y, reduction="none")
            per.topk(8).values.mean().backward()
            per.topk(1).values.backward()  # one value per row: may be one element
            per.topk(k).values.backward()  # k not shown
            per.sort().values[:2].backward()  # two rows: maybe one element each
            per.cumsum(0)[-1].sum().backward()
            model(x).topk(3).values.backward()  # a model's output: maybe anything
    """,
    "none_then_mean": """
        import torch.nn.functional as F

        per_sample = F.cross_entropy(logits, labels, reduction="none")
        loss = per_sample.mean()
        loss.backward()
    """,
    "default_reduction": """
        import torch.nn as nn

        criterion = nn.CrossEntropyLoss()
        loss = criterion(model(x), y)
        loss.backward()
    """,
    "reduction_sum": """
        import torch.nn.functional as F

        loss = F.mse_loss(pred, target, reduction="sum")
        loss.backward()
    """,
    "saliency_with_gradient": """
        import torch

        image.requires_grad_()
        out = model(image)
        out.backward(gradient=torch.ones_like(out))
        saliency = image.grad.abs().max(dim=1)[0]
    """,
    "weighted_then_mean": """
        import torch.nn.functional as F

        per_sample = F.cross_entropy(logits, labels, reduction="none")
        loss = (per_sample * weights).mean()
        loss.backward()
    """,
    "unknown_model_output": """
        out = model(x)
        out.backward()
        model(x).backward()
    """,
    "sum_of_vector": """
        import torch

        x = torch.ones(3, requires_grad=True)
        (x * 2).sum().backward()
    """,
    "norm_and_max": """
        import torch

        w = torch.randn(5, 5, requires_grad=True)
        w.norm().backward()
        w.max().backward()
        w.norm(2).backward()
    """,
    "torch_sum_no_dim": """
        import torch

        a = torch.rand(4, 4, requires_grad=True)
        torch.sum(a * a).backward()
        torch.mean(a).backward()
    """,
    "scalar_plus_scalar": """
        import torch.nn.functional as F

        l1 = F.mse_loss(a, b)
        l2 = F.l1_loss(c, d)
        loss = l1 + 0.5 * l2
        loss.backward()
    """,
    "half_sum": """
        import torch

        r = torch.randn(10, 3, requires_grad=True)
        loss = r.pow(2).sum() * 0.5
        loss.backward()
    """,
    "reassigned_in_branch": """
        import torch.nn.functional as F

        loss = F.mse_loss(out, y, reduction="none")
        if reduce:
            loss = loss.mean()
        loss.backward()
    """,
    "single_element_factory": """
        import torch

        t = torch.ones(1, requires_grad=True)
        (t * 3).backward()
        torch.tensor(2.0, requires_grad=True).pow(2).backward()
    """,
    "autograd_grad_with_grad_outputs": """
        import torch

        out = torch.randn(4, 2, requires_grad=True) * 3
        g = torch.autograd.grad(out, inputs, grad_outputs=torch.ones_like(out))
    """,
    "autograd_backward_with_grad_tensors": """
        import torch
        import torch.nn.functional as F

        losses = F.mse_loss(pred, y, reduction="none")
        torch.autograd.backward([losses], grad_tensors=[torch.ones_like(losses)])
    """,
    "reduction_from_variable": """
        import torch.nn as nn

        def make(reduction):
            crit = nn.MSELoss(reduction=reduction)
            loss = crit(a, b)
            loss.backward()
    """,
    "dim_reduction_that_may_remove_the_batch": """
        import torch.nn.functional as F

        per_elem = F.mse_loss(model(x), y, reduction="none")
        per_elem.sum(dim=0).backward()
        per_elem.mean(-1).backward()
        model(x).sum(dim=1).backward()
    """,
    "indexing_a_vector": """
        import torch.nn.functional as F

        losses = F.cross_entropy(logits, labels, reduction="none")
        losses[0].backward()
    """,
    "reduce_only_dim_of_vector": """
        import torch

        v = torch.randn(5, requires_grad=True)
        v.mean(dim=0).backward()
        torch.randn(1, 5, requires_grad=True).sum(dim=1).backward()
    """,
    "kl_batchmean": """
        import torch.nn.functional as F

        loss = F.kl_div(log_p, q, reduction="batchmean")
        loss.backward()
    """,
    "star_kwargs": """
        import torch.nn.functional as F

        def step(x, y, **kw):
            loss = F.mse_loss(x, y, reduction="none")
            loss.backward(**kw)
    """,
    "seed_example_with_gradient": """
        import torch

        inp = torch.eye(4, 5, requires_grad=True)
        out = (inp + 1).pow(2).t()
        out.backward(torch.ones_like(out), retain_graph=True)
        out.backward(torch.ones_like(out), retain_graph=True)
        out.backward(torch.ones_like(out))
    """,
    "loop_reassigns_before_use": """
        import torch.nn.functional as F

        loss = F.mse_loss(a, b, reduction="none")
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward()
    """,
    "name_rebound_in_comprehension": """
        import torch.nn.functional as F

        loss = F.mse_loss(a, b, reduction="none")
        [loss.backward() for loss in scalar_losses]
    """,
    "criterion_differs_between_calls": """
        import torch.nn as nn

        def train(model, loader, criterion):
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()

        train(model, loader, nn.MSELoss())
        train(model, loader, nn.MSELoss(reduction="none"))
    """,
    "criterion_rebound_per_epoch": """
        import torch.nn as nn

        crit = nn.MSELoss(reduction="none")
        for epoch in range(3):
            if epoch > 0:
                crit = nn.MSELoss()
            crit(model(x), y).backward()
    """,
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(name):
    source = textwrap.dedent(FLAGGED[name])
    found = [(f.line, f.code) for f in _lint(source)]
    assert found == _marked(source)
    assert found, "a flagged case must mark at least one line"


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean(name):
    source = textwrap.dedent(CLEAN[name])
    assert [(f.line, f.code) for f in _lint(source)] == []


def test_case_counts():
    assert len(FLAGGED) >= 20 and len(CLEAN) >= 20


def test_message_names_the_tensor_and_the_remedy():
    (finding,) = _lint(textwrap.dedent(FLAGGED["criterion_reduction_none"]))
    assert finding.severity == "error" and finding.name == "nonscalar-backward"
    (edit,) = finding.fix.edits  # the unsafe fix of issue 17: `loss.mean().backward()`
    assert edit.text == ".mean()" and "mean" in finding.fix.description
    assert "`loss`" in finding.message and "not a scalar" in finding.message
    assert "reduction=" in finding.message
    # the message says what is wrong, the help line how to fix it
    assert "`loss.mean()` or `loss.sum()`" in finding.help and "`gradient=`" in finding.help
    assert finding.fix.applicability == "unsafe"


def test_message_for_autograd_grad_asks_for_grad_outputs():
    (finding,) = _lint(textwrap.dedent(FLAGGED["autograd_grad_without_grad_outputs"]))
    assert "`grad_outputs=`" in finding.help


def test_message_for_a_dim_reduction_says_which_dim():
    (finding,) = _lint(textwrap.dedent(FLAGGED["sum_over_one_dim"]))
    assert "dim=1" in finding.message and "(32, 4)" in finding.message


def test_precedence_message_points_at_the_unreduced_loss():
    (finding,) = _lint(textwrap.dedent(FLAGGED["weighted_by_mean_precedence"]))
    assert 'reduction="none"' in finding.message


def _shape_of(source: str, expr_line: str) -> Shape:
    """Shape of the root of the backward call on the line containing `expr_line`."""
    source = textwrap.dedent(source)
    module = cst.parse_module(source)
    shapes = backward_shapes(module, ImportMap.of(module))
    for call, item in shapes.items():
        if expr_line in module.code_for_node(call):
            return item.roots[0][1]
    raise AssertionError(f"no backward call like {expr_line!r}")


@pytest.mark.parametrize(
    "expr, kind, dims",
    [
        ("torch.zeros(2, 3)", "nonscalar", (2, 3)),
        ("torch.zeros((2, 3))", "nonscalar", (2, 3)),
        ("torch.full((4,), 1.0)", "nonscalar", (4,)),
        ("torch.randint(0, 10, (3,))", "nonscalar", (3,)),
        ("torch.arange(5)", "nonscalar", (5,)),
        ("torch.arange(1, 2)", "scalar", (1,)),
        ("torch.linspace(0, 1, 7)", "nonscalar", (7,)),
        ("torch.eye(2, 3)", "nonscalar", (2, 3)),
        ("torch.tensor([[1., 2.], [3., 4.]])", "nonscalar", (2, 2)),
        ("torch.tensor(3.0)", "scalar", ()),
        ("torch.ones(2, 3).sum(dim=(0, 1))", "scalar", ()),
        ("torch.ones(2, 3).sum(1, keepdim=True)", "nonscalar", (2, 1)),
        ("torch.ones(2, 3).t()", "nonscalar", (3, 2)),
        ("torch.ones(3) @ torch.ones(3)", "scalar", ()),
        ("torch.ones(4, 3) @ torch.ones(3)", "nonscalar", (4,)),
        ("torch.ones(2, 3).reshape(-1)", "nonscalar", (6,)),
        ("torch.dot(a, b)", "scalar", ()),
        ("torch.ones(3).max(dim=0)", "unknown", None),
        ("torch.ones(1, 1) * torch.ones(1)", "scalar", (1, 1)),
    ],
)
def test_shapes(expr, kind, dims):
    shape = _shape_of(f"import torch\n({expr}).backward()\n", "backward")
    assert shape.kind == kind
    if dims is not None:
        assert shape.dims == dims


def test_long_method_chains_are_evaluated_once_per_link():
    # each link used to be evaluated twice (as the callee's base and as the receiver): 2**60 here
    chain = "model(x)" + ".sum()" * 60
    source = f"for x, y in loader:\n    loss = {chain}\n    loss.backward()\n    opt.zero_grad()\n"
    assert _lint(source) == []
    per_sample = "F.mse_loss(model(x), y, reduction='none')" + ".abs()" * 60
    flagged = f"import torch.nn.functional as F\nfor x, y in loader:\n    loss = {per_sample}\n    loss.backward()\n"
    assert [f.line for f in _lint(flagged)] == [4]
