"""GL003 on per-element losses of a model's predictions reduced over their last dimension
(issue 10): `huber(pred, y).sum(dim=-1)`, `nn.MSELoss(reduction="none")(pred, y).mean(dim=-1)`.

Compared element by element with the batch, a model's output keeps at least its dimensions, so a
reduction over `dim=-1` keeps one value per sample exactly as `model(x).sum(-1)` does. Squeezed
or flattened outputs, scores compared with scores (often one per sample already), unreduced
cross-entropy (one value per sample, not per element) and a second reduction stay silent: the
code no longer shows that a dimension is left besides the batch.

Lines that must be reported carry a `# GL003` comment; every other line must stay clean.
"""

from __future__ import annotations

import pytest

from harness import lint_project, marked_lines

FLAGGED = {
    "fabric_helper_sum_last": """
        import torch
        import torch.nn as nn
        from lightning.fabric import Fabric

        def huber_per_sample(pred, target, delta=1.0):
            diff = (pred - target).abs()
            return torch.where(diff < delta, 0.5 * diff ** 2, delta * (diff - 0.5 * delta)).sum(dim=-1)

        fabric = Fabric(devices=2)
        model, optimizer = fabric.setup(nn.Linear(16, 4), torch.optim.Adam(params))
        loader = fabric.setup_dataloaders(make_loader())
        for x, y in loader:
            optimizer.zero_grad()
            loss = huber_per_sample(model(x), y)
            fabric.backward(loss)  # GL003
            optimizer.step()
    """,
    "criterion_attr_mean_last_in_trainer": """
        import deepspeed
        import torch.nn as nn

        class Trainer:
            def __init__(self, model, args):
                self.engine, self.optimizer, _, _ = deepspeed.initialize(
                    args=args, model=model, model_parameters=model.parameters())
                self.criterion = nn.MSELoss(reduction="none")

            def train_batch(self, x, y):
                loss = self.criterion(self.engine(x), y).mean(dim=-1)
                self.engine.backward(loss)  # GL003
                self.engine.step()

            def fit(self, loader):
                for x, y in loader:
                    self.train_batch(x.cuda(), y.cuda())
    """,
    "functional_l1_none_sum_last": """
        import torch.nn.functional as F
        from torch.utils.data import DataLoader

        for x, y in DataLoader(ds, batch_size=32):
            opt.zero_grad()
            F.l1_loss(net(x), y, reduction="none").sum(-1).backward()  # GL003
            opt.step()
    """,
    "squared_error_mean_last_then_weighted": """
        from torch.utils.data import DataLoader

        for x, y in DataLoader(ds, batch_size=32, shuffle=True):
            opt.zero_grad()
            err = (net(x) - y) ** 2
            loss = err.mean(dim=-1) * 0.5
            loss.backward()  # GL003
            opt.step()
    """,
    "transposed_output_keeps_dims": """
        from torch.utils.data import DataLoader

        for x, y in DataLoader(ds, batch_size=32):
            opt.zero_grad()
            (net(x).transpose(1, 2) - y).abs().mean(-1).backward()  # GL003
            opt.step()
    """,
}

CLEAN = {
    "squeezed_output_mean_last": """
        from torch.utils.data import DataLoader

        for x, y in DataLoader(ds, batch_size=32):
            opt.zero_grad()
            q = net(x).squeeze(-1)
            ((q - y) ** 2).mean(-1).backward()
            net(x).squeeze(-1).sum(-1).backward()
            opt.step()
    """,
    "flattened_output_sum_last": """
        from torch.utils.data import DataLoader

        for x, y in DataLoader(ds, batch_size=32):
            opt.zero_grad()
            (net(x).flatten() - y.flatten()).pow(2).sum(-1).backward()
            opt.step()
    """,
    "reduced_twice": """
        from torch.utils.data import DataLoader

        for x, y in DataLoader(ds, batch_size=32):
            opt.zero_grad()
            ((net(x) - y) ** 2).sum(1).mean(-1).backward()
            ((net(x) - y) ** 2).mean(-1).mean(-1).backward()
            ((net(x) - y) ** 2)[:, 0].sum(-1).backward()
            opt.step()
    """,
    "scores_compared_sum_last": """
        import torch.nn.functional as F

        for good, bad in loader:
            opt.zero_grad()
            (-F.logsigmoid(scorer(good) - scorer(bad))).sum(-1).backward()
            opt.step()
    """,
    "cross_entropy_none_sum_last": """
        import torch.nn as nn
        from torch.utils.data import DataLoader

        criterion = nn.CrossEntropyLoss(reduction="none")
        for x, y in DataLoader(ds, batch_size=32):
            opt.zero_grad()
            criterion(net(x), y).sum(-1).backward()
            opt.step()
    """,
    "mean_over_every_dim": """
        import torch.nn as nn
        from torch.utils.data import DataLoader

        criterion = nn.MSELoss(reduction="none")
        for x, y in DataLoader(ds, batch_size=32):
            opt.zero_grad()
            criterion(net(x), y).mean(dim=-1).mean().backward()
            opt.step()
    """,
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(tmp_path, name):
    source, found = lint_project(tmp_path, {"train.py": FLAGGED[name]}, "train.py", "GL003")
    assert found, "a flagged case must mark at least one line"
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert all("one value per sample" in f.message for f in found)


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean(tmp_path, name):
    _, found = lint_project(tmp_path, {"train.py": CLEAN[name]}, "train.py", "GL003")
    assert [(f.line, f.message) for f in found] == []
