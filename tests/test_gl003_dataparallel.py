"""GL003 on DataParallel gathers in trainer-shaped code (issue 10): wraps in another method of a
trainer class, under a GPU-count test, of a model built elsewhere, of a loss module; tuples and
dicts of losses through the gather; and the clean twins (a reduction after the gather, DDP, a
wrapped encoder whose features feed a loss computed outside, a row of a gathered tensor).

Lines that must be reported carry a `# GL003` comment; every other line must stay clean.
"""

from __future__ import annotations

import pytest

from harness import lint_project, marked_lines


# A model whose forward returns a 0-dim loss when training and logits otherwise.
PROMPT_MODEL = """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class PromptModel(nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, image, label=None):
            logits = self.backbone(image)
            if self.training:
                return F.cross_entropy(logits, label)
            return logits
"""

FLAGGED = {
    # the wrap is in build_model, the backward in forward_backward; two backward forms
    "trainer_wraps_in_build_model": PROMPT_MODEL
    + """
    class Trainer(BaseTrainer):
        def build_model(self):
            self.model = PromptModel(make_backbone())
            self.model.to(self.device)
            self.scaler = GradScaler()
            if torch.cuda.device_count() > 1:
                self.model = nn.DataParallel(self.model)

        def forward_backward(self, batch):
            image, label = self.parse_batch(batch)
            model = self.model
            if self.amp:
                loss = model(image, label)
                self.scaler.scale(loss).backward()  # GL003
            else:
                loss = model(image, label)
                self.optim.zero_grad()
                loss.backward()  # GL003
                self.optim.step()
    """,
    # the forward returns a tuple whose first item is the 0-dim loss, combined with scalars
    "tuple_return_unpacked_and_combined": """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Model(nn.Module):
        def forward(self, image, label=None):
            logits = self.head(image)
            if self.training:
                return F.cross_entropy(logits, label), logits, self.feats
            return logits

    class Trainer:
        def __init__(self):
            self.model = Model()
            if torch.cuda.device_count() > 1:
                self.model = nn.DataParallel(self.model)

        def step(self, image, label):
            loss_ce, logits, feats = self.model(image, label)
            reg = F.l1_loss(feats, self.anchor) * 0.5
            loss = loss_ce + reg
            loss.backward()  # GL003
    """,
    # a model built by a registry: its forward is unknown, but whatever it returns comes back
    # concatenated across the replicas; DDP on the other arm does not change that arm
    "registry_model_tuple_of_losses": """
    import torch
    import torch.nn as nn
    from tools import builder

    def run(args, config):
        base_model = builder.model_builder(config.model)
        if args.distributed:
            base_model = nn.parallel.DistributedDataParallel(base_model, device_ids=[args.local_rank])
        else:
            base_model = nn.DataParallel(base_model).cuda()
        for points in train_loader:
            loss_1, loss_2 = base_model(points)
            loss = loss_1 + loss_2
            loss.backward()  # GL003
    """,
    # a model handed in from outside, wrapped in __init__ when several device ids are given
    "constructor_model_wrapped_by_device_ids": """
    import torch

    class Trainer:
        def __init__(self, model, device_ids):
            self.model = model
            self.model = self.model.to("cuda")
            if len(device_ids) > 1:
                self.model = torch.nn.DataParallel(self.model, device_ids=device_ids)

        def train_epoch(self):
            for data, target in self.data_loader:
                output = self.model(data, target=target)
                output, loss = output
                loss.backward()  # GL003
    """,
    # a dict of losses, its entry backpropagated as it is (the logging reduces it: too late)
    "dict_of_losses_unconditional_wrap": """
    import torch

    class Runner:
        def __init__(self, conf):
            self.trainer = make_trainer(conf)
            self.trainer = torch.nn.DataParallel(self.trainer).to(self.device)

        def train(self):
            for sample in self.loader:
                losses = self.trainer(sample, iter_step=self.iter_step)
                loss = losses["loss_lod0"]
                self.optimizer.zero_grad()
                loss.backward()  # GL003
                print(losses["loss_lod0"].mean().item())
    """,
    # a criterion wrapped in DataParallel (one loss per replica), passed to a training method
    "wrapped_criterion_passed_to_method": """
    import torch
    import torch.nn as nn

    class Trainer:
        def __init__(self, n_gpus):
            self.n_gpus = n_gpus
            self.criterion = nn.NLLLoss(weight=self.weights).to(self.device)
            if self.n_gpus > 1:
                self.criterion = nn.DataParallel(self.criterion).cuda()

        def train(self):
            for epoch in range(10):
                self.train_epoch(self.loader, criterion=self.criterion)

        def train_epoch(self, loader, criterion):
            for x, y in loader:
                output = self.model(x)
                loss = criterion(torch.log(output.clamp(min=1e-8)), y) + self.aux
                self.scaler.scale(loss).backward()  # GL003
    """,
    # a project loss module returning several 0-dim losses, wrapped
    "wrapped_loss_module_tuple": """
    import torch
    import torch.nn as nn

    class MultiLoss(nn.Module):
        def forward(self, emb, target):
            a = (emb - target).pow(2).mean()
            b = emb.abs().mean()
            return a, b

    criterion = torch.nn.DataParallel(MultiLoss())
    for emb, target in loader:
        loss_a, loss_b = criterion(net(emb), target)
        loss = loss_a + 0.1 * loss_b
        loss.backward()  # GL003
    """,
    # an output record's field through the gather
    "output_record_field": """
    import torch.nn as nn

    model = nn.DataParallel(build_model(cfg))
    for batch in train_loader:
        out = model(**batch)
        out.loss.backward()  # GL003
        out["loss"].backward()  # GL003
    """,
    # a wrapped loss module reached through a ModuleList built by appends, in another function
    "wrapped_loss_module_in_module_list": """
    import torch
    import torch.nn as nn

    class ContrastLoss(nn.Module):
        def forward(self, emb, target):
            return emb.pow(2).mean(), (emb - target).abs().mean()

    def train(criterion_list, optimizer):
        criterion_ce = criterion_list[0]
        criterion_mcl = criterion_list[1]
        for emb, target in train_loader:
            loss_a, loss_b = criterion_mcl(emb, target)
            loss = criterion_ce(net(emb), target) + loss_a + loss_b
            loss.backward()  # GL003

    if __name__ == "__main__":
        criterion_mcl = ContrastLoss().cuda()
        criterion_mcl = torch.nn.DataParallel(criterion_mcl)
        criterion_list = nn.ModuleList([])
        criterion_list.append(nn.CrossEntropyLoss())
        criterion_list.append(criterion_mcl)
        criterion_list.cuda()
        for epoch in range(10):
            train(criterion_list, optimizer)
    """,
    # a project helper builds and wraps the model (the wrap is inside the helper)
    "helper_returns_wrapped_model": """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def forward(self, x, y):
            return F.cross_entropy(self.fc(x), y)

    def get_model(gpu_ids):
        model = Net().cuda()
        if len(gpu_ids) > 1:
            model = torch.nn.DataParallel(model, device_ids=gpu_ids)
        return model

    def main(args):
        model = get_model(args.gpu_ids)
        for x, y in train_loader:
            loss = model(x, y)
            loss.backward()  # GL003
    """,
}

CLEAN = {
    "helper_reduces_after_wrap": """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def forward(self, x, y):
            return F.cross_entropy(self.fc(x), y)

    def get_model(gpu_ids):
        model = Net().cuda()
        if len(gpu_ids) > 1:
            model = torch.nn.DataParallel(model, device_ids=gpu_ids)
        return model

    def main(args):
        model = get_model(args.gpu_ids)
        for x, y in train_loader:
            loss = model(x, y)
            if len(args.gpu_ids) > 1:
                loss = loss.mean()
            loss.backward()
    """,
    "module_list_changed_after_appends": """
    import torch
    import torch.nn as nn

    class ContrastLoss(nn.Module):
        def forward(self, emb, target):
            return emb.pow(2).mean()

    def train(criterion_list):
        for emb, target in train_loader:
            loss = criterion_list[1](emb, target)
            loss.backward()

    if __name__ == "__main__":
        criterion_list = nn.ModuleList([nn.MSELoss()])
        criterion_list.append(torch.nn.DataParallel(ContrastLoss()))
        criterion_list.insert(0, ContrastLoss())
        train(criterion_list)
        other = [nn.MSELoss(), torch.nn.DataParallel(ContrastLoss())]
        other[1] = ContrastLoss()
        for emb, target in train_loader:
            other[1](emb, target).backward()
    """,
    "module_list_of_unwrapped_losses": """
    import torch.nn as nn

    class ContrastLoss(nn.Module):
        def forward(self, emb, target):
            return emb.pow(2).mean()

    criterion_list = nn.ModuleList([])
    criterion_list.append(nn.CrossEntropyLoss())
    criterion_list.append(ContrastLoss())
    for emb, target in train_loader:
        loss = criterion_list[0](net(emb), target) + criterion_list[1](emb, target)
        loss.backward()
    """,
    "trainer_mean_after_gather": PROMPT_MODEL
    + """
    class Trainer(BaseTrainer):
        def build_model(self):
            self.model = PromptModel(make_backbone())
            if torch.cuda.device_count() > 1:
                self.model = nn.DataParallel(self.model)

        def forward_backward(self, batch):
            image, label = self.parse_batch(batch)
            loss = self.model(image, label).mean()
            loss.backward()
            loss = self.model(image, label)
            if torch.cuda.device_count() > 1:
                loss = loss.mean()
            loss.backward()
    """,
    "trainer_without_wrap": PROMPT_MODEL
    + """
    class Trainer(BaseTrainer):
        def build_model(self):
            self.model = PromptModel(make_backbone())
            self.model.to(self.device)

        def forward_backward(self, batch):
            image, label = self.parse_batch(batch)
            loss = self.model(image, label)
            loss.backward()
    """,
    "registry_model_ddp_only": """
    import torch.nn as nn
    from tools import builder

    def run(args, config):
        base_model = builder.model_builder(config.model)
        base_model = nn.parallel.DistributedDataParallel(base_model, device_ids=[args.local_rank])
        for points in train_loader:
            loss_1, loss_2 = base_model(points)
            (loss_1 + loss_2).backward()
    """,
    "registry_model_losses_reduced": """
    import torch.nn as nn

    def run(config):
        model = nn.DataParallel(build(config))
        for points in train_loader:
            loss_1, loss_2 = model(points)
            loss = loss_1.mean() + loss_2.sum()
            loss.backward()
            out = model(points)
            out["loss"].mean().backward()
    """,
    "wrapped_encoder_features_feed_loss": """
    import torch.nn as nn
    import torch.nn.functional as F

    class Trainer:
        def __init__(self):
            self.encoder = nn.DataParallel(make_encoder())
            self.criterion = nn.CrossEntropyLoss()

        def step(self, x, y):
            feats = self.encoder(x)
            loss = F.cross_entropy(self.head(feats), y)
            loss.backward()
            loss = self.criterion(self.encoder(x), y)
            loss.backward()
            loss = (self.encoder(x) - y).pow(2).mean()
            loss.backward()
    """,
    "row_of_gathered_tensor_unknown": """
    import torch.nn as nn

    model = nn.DataParallel(build(cfg))
    for x in loader:
        out = model(x)
        out[0].backward()
    """,
    "criterion_wrapped_on_one_device": """
    import torch.nn as nn

    criterion = nn.DataParallel(nn.MSELoss(), device_ids=[0])
    for x, y in loader:
        criterion(net(x), y).backward()
    """,
    "criterion_not_wrapped_in_trainer": """
    import torch.nn as nn

    class Trainer:
        def __init__(self):
            self.criterion = nn.NLLLoss().to(self.device)
            self.criterion = self.criterion.cuda()

        def train(self):
            for x, y in self.loader:
                loss = self.criterion(self.model(x), y)
                loss.backward()
    """,
    "wrap_then_unwrapped_module": """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def forward(self, x, y):
            return F.mse_loss(self.fc(x), y)

    model = Net()
    if torch.cuda.device_count() > 1:
        model = nn.DataParallel(model)
    for x, y in loader:
        loss = model.module(x, y)
        loss.backward()
    """,
    "gathered_loss_with_gradient": """
    import torch
    import torch.nn as nn

    model = nn.DataParallel(build(cfg))
    for x in loader:
        loss = model(x)
        loss.backward(torch.ones_like(loss))
    """,
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(tmp_path, name):
    source, found = lint_project(tmp_path, {"train.py": FLAGGED[name]}, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert found and all("fails on more than one GPU" in f.message for f in found)


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean(tmp_path, name):
    _, found = lint_project(tmp_path, {"train.py": CLEAN[name]}, "train.py", "GL003")
    assert [(f.line, f.message) for f in found] == []
