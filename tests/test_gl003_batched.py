"""GL003 on batched values, DataParallel gathers and summaries across functions, classes and
modules (issue 10): the issue's inputs, their clean twins, and realistic variations.

Lines that must be reported carry a `# GL003` comment; every other line must stay clean. Multi-file
cases are written to a temporary project and analysed with `AnalysisOptions(project_root=...)`.
"""

from __future__ import annotations

import pytest

from harness import lint_project, marked_lines


# ---------------------------------------------------------------------------------------------
# The issue's inputs (1-7) and their clean twins

ISSUE_FLAGGED = {
    "1_dataparallel_under_device_count": """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class Classifier(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(16, 4)

            def forward(self, x, y):
                return F.cross_entropy(self.body(x), y)

        net = Classifier()
        if torch.cuda.device_count() > 1:
            net = nn.DataParallel(net)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for x, y in loader:
            opt.zero_grad(); loss = net(x, y)
            loss.backward()  # GL003
            opt.step()
    """,
    "2_custom_loss_module_per_pair": """
        import torch
        from torch import nn

        class HingeRank(nn.Module):
            def __init__(self, margin=1.0):
                super().__init__()
                self.margin = margin

            def forward(self, better, worse):
                return torch.clamp(worse - better + self.margin, min=0)

        rank_loss = HingeRank()
        for a, b in loader:
            opt.zero_grad()
            rank_loss(scorer(a), scorer(b)).backward()  # GL003
            opt.step()
    """,
    "4_precedence_in_function_fed_by_loop": """
        def learn(states, actions, targets, weights):
            q = qnet(states).gather(1, actions)
            loss = (targets - q).pow(2) * weights.mean()
            loss.backward()  # GL003

        for batch in replay_loader:
            learn(*batch)
    """,
    "5_dict_return_from_forward": """
        import torch.nn as nn
        import torch.nn.functional as F

        class Recognizer(nn.Module):
            def compute_loss(self, logits, target):
                per_token = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
                return per_token.sum(1).unsqueeze(1)

            def forward(self, x, target):
                logits = self.head(x)
                return {"logits": logits, "loss": self.compute_loss(logits, target)}

        model = Recognizer()
        for x, t in loader:
            model(x, t)["loss"].backward()  # GL003
    """,
    "6_engine_backward_per_pair": """
        import deepspeed
        import torch.nn.functional as F

        def pair_loss(chosen, rejected, beta=0.1):
            return -F.logsigmoid(beta * (chosen - rejected))

        engine, _, _, _ = deepspeed.initialize(args=args, model=model, model_parameters=model.parameters())
        for batch in loader:
            loss = pair_loss(engine(batch["chosen"]).sum(-1), engine(batch["rejected"]).sum(-1))
            engine.backward(loss)  # GL003
            engine.step()
    """,
    "7_autograd_grad_without_backward_word": """
        import torch
        import torch.nn.functional as F

        losses = F.mse_loss(model(x), y, reduction="none")
        grads = torch.autograd.grad(losses, model.parameters())  # GL003
    """,
}

ISSUE_CLEAN = {
    "1_twin_mean_when_several_gpus": """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class Classifier(nn.Module):
            def forward(self, x, y):
                return F.cross_entropy(self.body(x), y)

        net = Classifier()
        if torch.cuda.device_count() > 1:
            net = nn.DataParallel(net)
        for x, y in loader:
            opt.zero_grad(); loss = net(x, y)
            if torch.cuda.device_count() > 1:
                loss = loss.mean()
            loss.backward()
            opt.step()
    """,
    "1_twin_wrapped_encoder_loss_outside": """
        import torch.nn as nn
        import torch.nn.functional as F

        encoder = nn.DataParallel(nn.Linear(16, 8))
        head = nn.Linear(8, 2)
        for x, y in loader:
            loss = F.cross_entropy(head(encoder(x)), y)
            loss.backward()
    """,
    "2_twin_mean": """
        import torch
        from torch import nn

        class HingeRank(nn.Module):
            def forward(self, better, worse):
                return torch.clamp(worse - better + self.margin, min=0)

        rank_loss = HingeRank()
        for a, b in loader:
            rank_loss(scorer(a), scorer(b)).mean().backward()
    """,
    "4_twin_mean_of_product": """
        def learn(states, actions, targets, weights):
            q = qnet(states).gather(1, actions)
            loss = ((targets - q).pow(2) * weights).mean()
            loss.backward()

        for batch in replay_loader:
            learn(*batch)
    """,
    "5_twin_reduced_in_compute_loss": """
        import torch.nn as nn
        import torch.nn.functional as F

        class Recognizer(nn.Module):
            def compute_loss(self, logits, target):
                per_token = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
                return per_token.sum(1).mean()

            def forward(self, x, target):
                logits = self.head(x)
                return {"logits": logits, "loss": self.compute_loss(logits, target)}

        model = Recognizer()
        for x, t in loader:
            model(x, t)["loss"].backward()
    """,
    "6_twin_engine_backward_of_mean": """
        import deepspeed
        import torch.nn.functional as F

        def pair_loss(chosen, rejected, beta=0.1):
            return -F.logsigmoid(beta * (chosen - rejected))

        engine, _, _, _ = deepspeed.initialize(args=args, model=model, model_parameters=model.parameters())
        for batch in loader:
            loss = pair_loss(engine(batch["chosen"]).sum(-1), engine(batch["rejected"]).sum(-1))
            engine.backward(loss.mean())
            engine.step()
    """,
    "7_twin_autograd_grad_with_grad_outputs": """
        import torch
        import torch.nn.functional as F

        losses = F.mse_loss(model(x), y, reduction="none")
        grads = torch.autograd.grad(losses, model.parameters(), grad_outputs=torch.ones_like(losses))
        total = torch.autograd.grad(losses.sum(), model.parameters())
    """,
}

# ---------------------------------------------------------------------------------------------
# Variations: flagged

FLAGGED = {
    "squared_error_of_predictions": """
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = (model(x) - y) ** 2
            loss.backward()  # GL003
            optimizer.step()
    """,
    "abs_error_times_mean_mask": """
        for batch in loader:
            pred = net(batch["image"])
            loss = (pred - batch["depth"]).abs() * batch["mask"].float().mean()
            loss.backward()  # GL003
    """,
    "helper_reduces_only_features": """
        def per_sample_mse(pred, target):
            return ((pred - target) ** 2).mean(dim=1)

        for x, y in loader:
            loss = per_sample_mse(model(x), y)
            loss.backward()  # GL003
    """,
    "trainer_method_compute_loss": """
        import torch

        class Trainer:
            def __init__(self, model, loader):
                self.model = model
                self.train_loader = loader

            def compute_loss(self, pred, y):
                return (pred - y).pow(2).sum(dim=1)

            def fit(self, opt):
                for x, y in self.train_loader:
                    opt.zero_grad()
                    loss = self.compute_loss(self.model(x), y)
                    loss.backward()  # GL003
                    opt.step()
    """,
    "tuple_return_unpacked": """
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def forward(self, x, y):
                logits = self.fc(x)
                return logits, F.cross_entropy(logits, y, reduction="none")

        net = Net()
        for x, y in loader:
            _, loss = net(x, y)
            loss.backward()  # GL003
    """,
    "output_record_dataclass": """
        from dataclasses import dataclass
        import torch.nn as nn

        @dataclass
        class Output:
            loss: object
            logits: object

        class Model(nn.Module):
            def forward(self, x, y):
                logits = self.head(x)
                return Output(loss=(logits - y).pow(2).sum(dim=1), logits=logits)

        model = Model()
        for x, y in loader:
            out = model(x, y)
            out.loss.backward()  # GL003
    """,
    "lightning_manual_backward_per_sample": """
        import lightning as L

        class Regressor(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False

            def forward(self, x):
                return self.net(x)

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                x, y = batch
                loss = (self(x) - y).pow(2)
                opt.zero_grad()
                self.manual_backward(loss)  # GL003
                opt.step()
    """,
    "accelerate_gathered_log_probs": """
        import torch

        for batch in train_dataloader:
            outputs = model(**batch)
            logp = torch.log_softmax(outputs.logits, -1).gather(1, batch["labels"].unsqueeze(1))
            loss = -logp
            accelerator.backward(loss)  # GL003
            optimizer.step()
    """,
    "fabric_backward_abs_error": """
        for x, y in fabric_loader:
            loss = (model(x) - y).abs()
            fabric.backward(loss)  # GL003
    """,
    "autograd_grad_of_picked_scores": """
        import torch

        for images, labels in loader:
            scores = model(images).gather(1, labels.view(-1, 1))
            (saliency,) = torch.autograd.grad(scores, images)  # GL003
    """,
    "contrastive_unreduced": """
        for x1, x2 in pair_loader:
            z1, z2 = encoder(x1), encoder(x2)
            sim = (z1 * z2).sum(dim=-1)
            loss = 1 - sim
            loss.backward()  # GL003
    """,
    "policy_gradient_per_sample": """
        for states, actions, returns in rollout_loader:
            logp = policy(states).log_softmax(-1).gather(1, actions)
            loss = -(logp * returns)
            loss.backward()  # GL003
    """,
    "column_of_predictions": """
        for x, y in loader:
            loss = (model(x)[:, 0] - y) ** 2
            loss.backward()  # GL003
    """,
    "dqn_target_from_max": """
        for states, actions, rewards, next_states in replay_loader:
            q = policy_net(states).gather(1, actions)
            target = rewards + 0.99 * target_net(next_states).max(1)[0]
            loss = (q - target.detach()) ** 2
            loss.backward()  # GL003
    """,
    "view_batch_rows_norm": """
        for x, _ in loader:
            feats = backbone(x).view(x.size(0), -1)
            loss = feats.norm(dim=1)
            loss.backward()  # GL003
    """,
    "unsqueezed_per_sample": """
        for x, y in loader:
            per_sample = (net(x) - y).abs().sum(1)
            loss = per_sample.unsqueeze(1)
            loss.backward()  # GL003
    """,
    "self_criterion_custom_module": """
        import torch
        from torch import nn

        class PairLoss(nn.Module):
            def forward(self, a, b):
                return (a - b).pow(2).sum(dim=1)

        class Trainer:
            def __init__(self, model):
                self.model = model
                self.criterion = PairLoss()

            def run(self, loader):
                for x, y in loader:
                    loss = self.criterion(self.model(x), y)
                    loss.backward()  # GL003
    """,
    "strategy_backward": """
        class Loop:
            def step(self, loader):
                for x, y in loader:
                    loss = (self.model(x) - y) ** 2
                    self.strategy.backward(loss, self.optimizer)  # GL003
    """,
    "autograd_grad_imported_alias": """
        from torch.autograd import grad

        for x, y in loader:
            losses = (model(x) - y).pow(2).mean(1)
            g = grad(losses, params)  # GL003
    """,
    "dataparallel_in_main_function": """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def forward(self, x, y):
                return F.nll_loss(F.log_softmax(self.fc(x), 1), y)

        def main():
            model = Net().cuda()
            if torch.cuda.device_count() > 1:
                model = nn.DataParallel(model)
            for data, target in train_loader:
                loss = model(data, target)
                loss.backward()  # GL003

        main()
    """,
    "dataparallel_project_subclass": """
        import torch.nn as nn
        import torch.nn.functional as F

        class ParallelWrapper(nn.DataParallel):
            pass

        class Net(nn.Module):
            def forward(self, x, y):
                return F.mse_loss(self.fc(x), y)

        model = ParallelWrapper(Net(), device_ids=[0, 1])
        for x, y in loader:
            loss = model(x, y)
            loss.backward()  # GL003
    """,
    "dataparallel_library_subclass_dict": """
        import torch.nn as nn
        import torch.nn.functional as F
        from mmcv.parallel import MMDataParallel

        class Detector(nn.Module):
            def forward(self, img, target):
                return {"loss_cls": F.cross_entropy(self.cls(img), target)}

        model = MMDataParallel(Detector(), device_ids=range(2))
        for img, target in data_loader:
            losses = model(img, target)
            losses["loss_cls"].backward()  # GL003
    """,
    "dataparallel_then_cuda": """
        import torch.nn as nn

        class Net(nn.Module):
            def forward(self, x, y):
                return ((self.fc(x) - y) ** 2).mean()

        net = nn.DataParallel(Net()).cuda()
        for x, y in loader:
            net(x, y).backward()  # GL003
    """,
    "hf_style_forward_record_per_token": """
        import torch.nn as nn
        import torch.nn.functional as F
        from transformers.modeling_outputs import CausalLMOutput

        class LM(nn.Module):
            def forward(self, input_ids, labels):
                logits = self.lm_head(self.body(input_ids))
                loss = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").sum(1)
                return CausalLMOutput(loss=loss, logits=logits)

        model = LM()
        for batch in loader:
            outputs = model(batch["input_ids"], batch["labels"])
            loss = outputs.loss
            loss.backward()  # GL003
    """,
    "reduction_through_a_local_constant": """
        import torch.nn as nn

        class Tagger(nn.Module):
            def __init__(self, n_tags):
                super().__init__()
                reduction = "none"
                self.criterion = nn.CrossEntropyLoss(reduction=reduction)

            def forward(self, x, tags):
                return self.criterion(self.fc(x), tags)

        model = Tagger(9)
        for x, tags in loader:
            loss = model(x, tags)
            loss.backward()  # GL003
    """,
    "lightning_training_step_returns_per_sample": """
        import pytorch_lightning as pl
        import torch.nn.functional as F

        class Regressor(pl.LightningModule):
            def forward(self, x):
                return self.net(x)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = (self(x) - y).abs()
                self.log("train_loss", loss.mean())
                return loss  # GL003

            def validation_step(self, batch, batch_idx):
                x, y = batch
                return (self(x) - y).abs()
    """,
    "lightning_training_step_returns_dict": """
        import lightning as L
        import torch.nn.functional as F

        class Tagger(L.LightningModule):
            def training_step(self, batch, batch_idx):
                logits = self.model(batch["x"])
                per_token = F.cross_entropy(logits, batch["y"], reduction="none")
                return {"loss": per_token, "logits": logits}  # GL003
    """,
    "gan_relativistic_per_sample": """
        for real, fake in gan_loader:
            d_loss = netD(real) - netD(fake)
            d_loss.backward()  # GL003
    """,
    "method_fed_by_loader_multi_scale_rank_loss": """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        from torch.autograd import Variable

        class RankLoss(nn.Module):
            def __init__(self, margin):
                super().__init__()
                self.margin = margin

            def forward(self, scores1, scores2, target):
                p1 = F.softmax(scores1, dim=1)[:, target]
                p2 = F.softmax(scores2, dim=1)[:, target]
                return torch.clamp(p1 - p2 + self.margin, min=0)

        class Manager:
            def __init__(self, model, loader):
                self.model = model
                self.loader = loader
                self.criterion_rank = RankLoss(0.05)

            def do_batch(self, optimizer, batch, label):
                batch = Variable(batch.cuda())
                scores = self.model(batch)
                for i in range(len(scores) - 1, 0, -1):
                    self.criterion_rank(scores[i - 1], scores[i], label).backward(retain_graph=True)  # GL003
                optimizer.step()

            def do_epoch(self, optimizer):
                for batch, label in self.loader:
                    self.do_batch(optimizer, batch, label)
    """,
}

# ---------------------------------------------------------------------------------------------
# Variations: clean (tricky correct code)

CLEAN = {
    "sum_reduced_squared_error": """
        for x, y in loader:
            loss = ((model(x) - y) ** 2).sum()
            loss.backward()
    """,
    "model_returns_a_loss": """
        for x, y in loader:
            loss = model(x, y)
            loss.backward()
            (model(x, y) * 0.5).backward()
            (model(x, y) / accumulation_steps).backward()
    """,
    "project_model_returns_0_dim_loss": """
        import torch.nn as nn
        import torch.nn.functional as F

        class Classifier(nn.Module):
            def forward(self, x, y):
                return F.cross_entropy(self.body(x), y)

        net = Classifier()
        for x, y in loader:
            loss = net(x, y)
            loss.backward()
    """,
    "ddp_does_not_gather": """
        import torch.nn as nn
        import torch.nn.functional as F
        from torch.nn.parallel import DistributedDataParallel as DDP

        class Classifier(nn.Module):
            def forward(self, x, y):
                return F.cross_entropy(self.body(x), y)

        net = DDP(Classifier(), device_ids=[rank])
        for x, y in loader:
            loss = net(x, y)
            loss.backward()
    """,
    "fsdp_does_not_gather": """
        import torch.nn as nn
        import torch.nn.functional as F
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        class Classifier(nn.Module):
            def forward(self, x, y):
                return F.cross_entropy(self.body(x), y)

        net = FSDP(Classifier())
        for x, y in loader:
            net(x, y).backward()
    """,
    "n_gpu_mean": """
        import torch.nn as nn

        class Net(nn.Module):
            def forward(self, x, y):
                return ((self.fc(x) - y) ** 2).mean()

        model = nn.DataParallel(Net())
        for x, y in loader:
            loss = model(x, y)
            if n_gpu > 1:
                loss = loss.mean()
            loss.backward()
    """,
    "dataparallel_logits_loss_outside": """
        import torch.nn as nn

        class Net(nn.Module):
            def forward(self, x):
                return self.fc(x)

        criterion = nn.CrossEntropyLoss()
        model = nn.DataParallel(Net())
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
    """,
    "dataparallel_on_one_device": """
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def forward(self, x, y):
                return F.mse_loss(self.fc(x), y)

        model = nn.DataParallel(Net(), device_ids=[0])
        for x, y in loader:
            model(x, y).backward()
    """,
    "dataparallel_mean_unconditional": """
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def forward(self, x, y):
                return F.mse_loss(self.fc(x), y)

        model = nn.DataParallel(Net())
        for x, y in loader:
            model(x, y).mean().backward()
    """,
    "ones_like_gradient": """
        for x, y in loader:
            loss = (model(x) - y) ** 2
            loss.backward(torch.ones_like(loss))
    """,
    "rl_loss_of_one_transition": """
        state = env.reset()
        for t in range(1000):
            value = critic(state)
            next_state, reward, done, _ = env.step(actor(state))
            loss = (reward + 0.99 * critic(next_state) - value) ** 2
            loss.backward()
            state = next_state
    """,
    "hf_outputs_loss": """
        for batch in train_dataloader:
            outputs = model(**batch)
            loss = outputs.loss
            accelerator.backward(loss)
            optimizer.step()
    """,
    "hf_loss_subscript": """
        for batch in loader:
            loss = model(**batch)[0]
            loss.backward()
            out = model(input_ids=batch["input_ids"], labels=batch["labels"])
            out["loss"].backward()
    """,
    "lightning_mean_loss": """
        import lightning as L
        import torch.nn.functional as F

        class Model(L.LightningModule):
            def forward(self, x):
                return self.net(x)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = F.cross_entropy(self(x), y)
                self.manual_backward(loss)
                other = ((self(x) - y) ** 2).mean()
                self.manual_backward(other)
                return loss
    """,
    "gan_bce_default_reduction": """
        import torch.nn as nn

        criterion = nn.BCELoss()
        for real, _ in dataloader:
            errD_real = criterion(netD(real), real_label)
            errD_real.backward()
            errG = criterion(netD(netG(noise)), real_label)
            errG.backward()
    """,
    "lightning_returns_and_manual_optimization": """
        import lightning as L
        import torch.nn.functional as F

        class Mean(L.LightningModule):
            def training_step(self, batch, batch_idx):
                x, y = batch
                return {"loss": ((self(x) - y) ** 2).mean(), "per_sample": (self(x) - y).abs()}

        class Manual(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = ((self(x) - y) ** 2).mean()
                self.manual_backward(loss)
                return (self(x) - y).abs()

        class NotLightning:
            def training_step(self, batch, batch_idx):
                x, y = batch
                return (self.model(x) - y).abs()
    """,
    "wgan_means": """
        for real, _ in dataloader:
            errD = netD(real).mean() - netD(netG(noise)).mean()
            errD.backward()
    """,
    "contrastive_mean": """
        for x1, x2 in pair_loader:
            z1, z2 = encoder(x1), encoder(x2)
            loss = (1 - (z1 * z2).sum(dim=-1)).mean()
            loss.backward()
    """,
    "per_sample_summed_then_backward": """
        import torch.nn.functional as F

        for x, y in loader:
            losses = F.mse_loss(model(x), y, reduction="none")
            losses.sum().backward()
            per_sample = (model(x) - y).pow(2).sum(dim=1)
            per_sample.sum().backward()
    """,
    "tuple_return_scalar": """
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def forward(self, x, y):
                logits = self.fc(x)
                return logits, F.cross_entropy(logits, y)

        net = Net()
        for x, y in loader:
            logits, loss = net(x, y)
            loss.backward()
    """,
    "dict_return_scalar": """
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def forward(self, x, y):
                logits = self.fc(x)
                return {"logits": logits, "loss": F.cross_entropy(logits, y)}

        model = Net()
        for x, y in loader:
            model(x, y)["loss"].backward()
    """,
    "helper_that_reduces": """
        def compute_loss(pred, y):
            return ((pred - y) ** 2).mean()

        for x, y in loader:
            loss = compute_loss(model(x), y)
            loss.backward()
    """,
    "deepspeed_model_returns_loss": """
        import deepspeed

        engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=params)
        for batch in loader:
            loss = engine(batch)
            engine.backward(loss)
            engine.step()
    """,
    "unknown_loss_fn": """
        loss_fn = build_loss(cfg)
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
    """,
    "loss_plus_regulariser": """
        for x, y in loader:
            loss = model(x, y) + 0.01 * reg
            loss.backward()
    """,
    "batch_size_scaling": """
        for x, y in loader:
            loss = criterion(model(x), y) * x.shape[0]
            loss.backward()
            loss2 = criterion(model(x), y) * x.size(0) / len(y)
            loss2.backward()
            loss3 = criterion(model(x), y) * x.numel() / y.dim()
            loss3.backward()
    """,
    "wgan_discriminator_reduces_in_forward": """
        import torch.nn as nn

        class Critic(nn.Module):
            def forward(self, x):
                out = self.main(x)
                return out.mean(0).view(1)

        netD = Critic()
        for real, fake in gan_loader:
            d_loss = netD(real) - netD(fake)
            d_loss.backward()
    """,
    "recursive_helpers_stay_unknown": """
        def f(x, n):
            return g(x, n - 1)

        def g(x, n):
            return f(x, n)

        for x, y in loader:
            f(model(x) - y, 3).backward()
    """,
    "reduction_dim_zero_of_output": """
        for x, y in loader:
            loss = model(x).sum(0)
            loss.backward()
    """,
    "method_called_with_different_values": """
        class Trainer:
            def step(self, pred, y):
                loss = (pred - y) ** 2
                loss.backward()

            def fit(self, loader):
                for x, y in loader:
                    self.step(self.model(x), y)
                self.step(self.model(x0), y0)
    """,
    "multi_head_outputs_each_reduced": """
        import torch.nn.functional as F

        for x, y in loader:
            outs = model(x)
            loss = sum(F.cross_entropy(outs[i], y) for i in range(3))
            loss.backward()
            F.cross_entropy(outs[0], y).backward()
    """,
}


@pytest.mark.parametrize("name", sorted(ISSUE_FLAGGED) + sorted(FLAGGED))
def test_flagged(tmp_path, name):
    text = ISSUE_FLAGGED.get(name) or FLAGGED[name]
    source, found = lint_project(tmp_path, {"train.py": text}, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert found, "a flagged case must mark at least one line"


@pytest.mark.parametrize("name", sorted(ISSUE_CLEAN) + sorted(CLEAN))
def test_clean(tmp_path, name):
    text = ISSUE_CLEAN.get(name) or CLEAN[name]
    _, found = lint_project(tmp_path, {"train.py": text}, "train.py", "GL003")
    assert [(f.line, f.message) for f in found] == []


def test_case_counts():
    assert len(FLAGGED) >= 25 and len(CLEAN) >= 25


# ---------------------------------------------------------------------------------------------
# Across modules

SIAMESE = """
    import torch.nn as nn

    class Siamese(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 4)

        def forward(self, a, b):
            za, zb = self.proj(a), self.proj(b)
            return self._similarity_loss(za, zb)

        def _similarity_loss(self, za, zb):
            return 1 - (za * zb).sum(dim=-1)
"""


def test_3_script_directory_import(tmp_path):
    train = """
        import torch
        from model import Siamese

        net = Siamese()
        opt = torch.optim.Adam(net.parameters())
        for a, b in pair_loader:
            opt.zero_grad()
            loss = net(a, b)
            loss.backward()  # GL003
            opt.step()
    """
    source, found = lint_project(tmp_path, {"model.py": SIAMESE, "train.py": train}, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert "one value per sample: fails for any batch larger than 1" in found[0].message


def test_3_twin_mean(tmp_path):
    train = """
        from model import Siamese

        net = Siamese()
        for a, b in pair_loader:
            loss = net(a, b).mean()
            loss.backward()
    """
    _, found = lint_project(tmp_path, {"model.py": SIAMESE, "train.py": train}, "train.py", "GL003")
    assert found == []


def test_package_import_with_reexport(tmp_path):
    files = {
        "proj/__init__.py": "",
        "proj/losses/__init__.py": "from .pairwise import PairLoss, pair_margin\n",
        "proj/losses/pairwise.py": """
            import torch
            import torch.nn as nn

            def pair_margin(pos, neg, margin=0.2):
                return torch.relu(neg - pos + margin)

            class PairLoss(nn.Module):
                def forward(self, pos, neg):
                    return pair_margin(pos, neg)
        """,
        "proj/train.py": """
            from proj.losses import PairLoss
            from .losses import pair_margin

            criterion = PairLoss()
            for a, b in loader:
                criterion(model(a), model(b)).backward()  # GL003
                pair_margin(model(a), model(b)).backward()  # GL003
                pair_margin(model(a), model(b)).mean().backward()
        """,
    }
    source, found = lint_project(tmp_path, files, "proj/train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")


def test_import_module_attribute_and_dataparallel_across_files(tmp_path):
    files = {
        "nets.py": """
            import torch.nn as nn
            import torch.nn.functional as F

            class Net(nn.Module):
                def forward(self, x, y):
                    return F.cross_entropy(self.fc(x), y)
        """,
        "train.py": """
            import torch
            import nets

            model = nets.Net()
            if torch.cuda.device_count() > 1:
                model = torch.nn.DataParallel(model)
            for x, y in loader:
                loss = model(x, y)
                loss.backward()  # GL003
        """,
    }
    source, found = lint_project(tmp_path, files, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert "fails on more than one GPU" in found[0].message and "DataParallel" in found[0].message


def test_unreadable_or_missing_modules_stay_silent(tmp_path):
    files = {
        "broken.py": "def f(:\n",
        "train.py": """
            from broken import f
            from missing import g

            for x, y in loader:
                f(model(x), y).backward()
                g(model(x), y).backward()
        """,
    }
    _, found = lint_project(tmp_path, files, "train.py", "GL003")
    assert found == []


def test_summaries_are_bounded(tmp_path):
    # A long chain of helpers: deeper than the summary depth, so the root stays unknown, quickly.
    chain = "\n".join(f"def h{i}(a, b):\n    return h{i + 1}(a, b)\n" for i in range(40))
    text = chain + "def h40(a, b):\n    return a - b\n\nfor x, y in loader:\n    h0(model(x), y).backward()\n"
    _, found = lint_project(tmp_path, {"train.py": text}, "train.py", "GL003")
    assert found == []


def test_messages_state_the_condition(tmp_path):
    _, found = lint_project(tmp_path, {"train.py": ISSUE_FLAGGED["4_precedence_in_function_fed_by_loop"]}, "train.py", "GL003")
    (finding,) = found
    assert "has one value per sample: fails for any batch larger than 1" in finding.message
    assert "`loss.mean()` or `loss.sum()`" in finding.help
    _, found = lint_project(tmp_path, {"train.py": ISSUE_FLAGGED["1_dataparallel_under_device_count"]}, "train.py", "GL003")
    (finding,) = found
    assert "one loss per GPU" in finding.message and "fails on more than one GPU" in finding.message


# ---------------------------------------------------------------------------------------------
# Sums in which model outputs appear with both signs compare them element by element

SIGNED = """
    import torch
    import torch.nn as nn


    class MarginRank(nn.Module):
        def __init__(self, margin=0.1):
            super().__init__()
            self.margin = margin

        def forward(self, preferred, other):
            return torch.clamp({expr}, min=0.0)


    def train(scorer, train_loader):
        criterion = MarginRank()
        opt = torch.optim.Adam(scorer.parameters(), lr=1e-3)
        for preferred, other in train_loader:
            opt.zero_grad()
            loss = criterion(scorer(preferred), scorer(other))
            loss.backward(){mark}
            opt.step()
"""


@pytest.mark.parametrize("expr", [
    "self.margin - preferred + other",
    "-preferred + other + self.margin",
    "0.1 + other - (preferred - 0.0)",
    "other + (self.margin - preferred)",
])
def test_outputs_with_both_signs_are_per_sample(tmp_path, expr):
    source, findings = lint_project(tmp_path, {"train.py": SIGNED.format(expr=expr, mark="  # GL003")}, "train.py", "GL003")
    assert [f.line for f in findings] == marked_lines(source, "GL003") != []
    assert "compares model outputs" in findings[0].message


@pytest.mark.parametrize("expr", [
    "self.margin + preferred + other",  # a sum of outputs: a model may return 0-dim scores
    "self.margin - preferred.mean() + other.mean()",  # reduced first: scalars
    "-(preferred + other).sum()",
])
def test_outputs_with_one_sign_or_reduced_stay_unknown(tmp_path, expr):
    _, findings = lint_project(tmp_path, {"train.py": SIGNED.format(expr=expr, mark="")}, "train.py", "GL003")
    assert findings == []
