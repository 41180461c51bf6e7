"""GL002 unnecessary-retain-graph: realistic flagged and clean training code.

Each case is a small script or function as people write them. Lines that must be reported carry a
`# GL002` comment; every other line must stay clean, and GL003 must not fire on any of them.
"""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options

CODES = ("GL002", "GL003")


def _lint(source: str, **options):
    return lint_options(source, "train.py", AnalysisOptions(**options), codes=list(CODES))


def _marked(source: str):
    return [(n, "GL002") for n, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# GL002")]


def _apply(source: str, fix) -> str:
    for edit in sorted(fix.edits, key=lambda e: e.start, reverse=True):
        source = source[: edit.start] + edit.text + source[edit.end :]
    return source


FLAGGED = {
    "one_loss_over_a_checkpointed_trunk": """
        import torch
        from torch.utils import checkpoint as ckpt

        for step in range(4):
            x = torch.randn(5, 6)
            feats = ckpt.checkpoint_sequential(trunk, 2, x, use_reentrant=False)
            loss = head(feats).pow(2).mean()
            opt.zero_grad()
            loss.backward(retain_graph=True)  # GL002
            opt.step()
    """,
    "lbfgs_step_closure": """
        import torch
        import torch.nn.functional as F

        opt = torch.optim.LBFGS(model.parameters(), lr=0.1)
        for epoch in range(20):
            def closure():
                opt.zero_grad()
                loss = F.mse_loss(model(x), y)
                loss.backward(retain_graph=True)  # GL002
                return loss
            opt.step(closure)
    """,
    "step_closure_keyword_in_two_functions": """
        import torch

        def fit(model, opt, x, y):
            def closure():
                opt.zero_grad()
                loss = (model(x) - y).pow(2).mean()
                loss.backward(retain_graph=True)  # GL002
                return loss
            for _ in range(10):
                opt.step(closure=closure)

        def refit(model, opt, x, y):
            def closure():
                opt.zero_grad()
                loss = (model(x) - y).abs().mean()
                loss.backward()
                return loss
            opt.step(closure)
    """,
    "seed_repeated_backward": """
        import torch

        inp = torch.eye(4, 5, requires_grad=True)
        out = (inp + 1).pow(2).t()
        out.backward(torch.ones_like(inp), retain_graph=True)
        print(f"First call\\n{inp.grad}")
        out.backward(torch.ones_like(inp), retain_graph=True)
        print(f"\\nSecond call\\n{inp.grad}")
        inp.grad.zero_()
        out.backward(torch.ones_like(inp), retain_graph=True)  # GL002
        print(f"\\nCall after zeroing gradients\\n{inp.grad}")
    """,
    "module_level_loop": """
        import torch
        from torch import nn

        model = nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        criterion = nn.MSELoss()
        data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]
        for inputs, targets in data:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
    """,
    "loader_loops_stay_fresh_each_iteration": """
        import torch
        from torch.utils.data import DataLoader

        def train(model, loader, dataset, crit, opt, train_data):
            for x, y in loader:
                loss = crit(model(x), y)
                loss.backward(retain_graph=True)  # GL002
                opt.step()
            for i, (x, y) in enumerate(loader):
                loss = crit(model(x), y)
                loss.backward(retain_graph=True)  # GL002
                opt.step()
            dataloader = DataLoader(dataset, batch_size=8)
            for batch in dataloader:
                loss = model(batch).mean()
                loss.backward(retain_graph=True)  # GL002
                opt.step()
            for step in range(3):
                loss = model(torch.randn(2, 4)).mean()
                loss.backward(retain_graph=True)  # GL002
                opt.step()
            batches = batchify(train_data, 4)
            for x in batches:
                loss = model(x).mean()
                loss.backward(retain_graph=True)  # GL002
                opt.step()


        def batchify(data, bsz):
            nbatch = data.size(0) // bsz
            return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()
    """,
    "train_function_with_device": """
        import torch

        def train(model, loader, optimizer, criterion, device, epochs):
            model.train()
            for epoch in range(epochs):
                running = 0.0
                for x, y in loader:
                    x, y = x.to(device), y.to(device)
                    optimizer.zero_grad()
                    out = model(x)
                    loss = criterion(out, y)
                    loss.backward(retain_graph=True)  # GL002
                    optimizer.step()
                    running += loss.item()
                print(epoch, running / len(loader))
    """,
    "tbptt_detached_hidden": """
        import torch
        from torch import nn

        rnn = nn.LSTM(10, 20)
        head = nn.Linear(20, 1)
        opt = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()))
        hidden = (torch.zeros(1, 3, 20), torch.zeros(1, 3, 20))
        for chunk, target in chunks:
            hidden = tuple(h.detach() for h in hidden)
            output, hidden = rnn(chunk, hidden)
            loss = nn.functional.mse_loss(head(output), target)
            opt.zero_grad()
            loss.backward(retain_graph=True)  # GL002
            opt.step()
    """,
    "tbptt_detach_in_place": """
        import torch

        def run(model, batches, opt):
            h = model.init_hidden(32)
            for x, y in batches:
                h.detach_()
                out, h = model(x, h)
                loss = torch.nn.functional.cross_entropy(out, y)
                opt.zero_grad()
                loss.backward(retain_graph=True)  # GL002
                opt.step()
    """,
    "train_step_helper": """
        import torch

        def train_step(model, batch, optimizer):
            inputs, labels = batch
            optimizer.zero_grad()
            logits = model(inputs)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
            return loss.item()
    """,
    "autograd_grad_once": """
        import torch

        def grad_norm(model, x, y):
            loss = torch.nn.functional.mse_loss(model(x), y)
            grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)  # GL002
            return torch.sqrt(sum((g ** 2).sum() for g in grads))
    """,
    "autograd_backward_in_loop": """
        import torch

        for step in range(100):
            x = torch.randn(16, 3)
            loss = net(x).pow(2).mean()
            opt.zero_grad()
            torch.autograd.backward(loss, retain_graph=True)  # GL002
            opt.step()
    """,
    "accelerate_loop": """
        from accelerate import Accelerator

        accelerator = Accelerator()
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        for batch in loader:
            optimizer.zero_grad()
            outputs = model(**batch)
            loss = outputs.loss
            accelerator.backward(loss, retain_graph=True)  # GL002
            optimizer.step()
    """,
    "lightning_manual_backward": """
        import torch
        import lightning as L

        class Model(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False
                self.net = torch.nn.Linear(4, 2)

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                x, y = batch
                loss = torch.nn.functional.cross_entropy(self.net(x), y)
                opt.zero_grad()
                self.manual_backward(loss, retain_graph=True)  # GL002
                opt.step()
                self.log("train_loss", loss)
                return loss
    """,
    "gan_with_detached_fake": """
        import torch
        from torch import nn

        bce = nn.BCEWithLogitsLoss()
        for real in loader:
            z = torch.randn(real.size(0), 64)
            fake = G(z)
            d_loss = bce(D(real), torch.ones(64, 1)) + bce(D(fake.detach()), torch.zeros(64, 1))
            opt_d.zero_grad()
            d_loss.backward(retain_graph=True)  # GL002
            opt_d.step()
            g_loss = bce(D(fake), torch.ones(64, 1))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
    """,
    "last_of_two_losses": """
        import torch

        features = backbone(images)
        cls_loss = ce(cls_head(features), labels)
        box_loss = l1(box_head(features), boxes)
        cls_loss.backward(retain_graph=True)
        box_loss.backward(retain_graph=True)  # GL002
        optimizer.step()
    """,
    "multitask_loop_last_retains": """
        import torch

        for x, y1, y2 in loader:
            shared = trunk(x)
            loss_a = crit_a(head_a(shared), y1)
            loss_b = crit_b(head_b(shared), y2)
            optimizer.zero_grad()
            loss_a.backward(retain_graph=True)
            loss_b.backward(retain_graph=True)  # GL002
            optimizer.step()
    """,
    "amp_scaler": """
        import torch

        scaler = torch.cuda.amp.GradScaler()
        for images, labels in train_loader:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16):
                loss = criterion(model(images), labels)
            scaler.scale(loss).backward(retain_graph=True)  # GL002
            scaler.step(optimizer)
            scaler.update()
    """,
    "inline_root": """
        import torch

        def fit(model, data, opt):
            for x in data:
                opt.zero_grad()
                model(x).sum().backward(retain_graph=True)  # GL002
                opt.step()
    """,
    "explicit_create_graph_false": """
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward(create_graph=False, retain_graph=True)  # GL002
            opt.step()
            opt.zero_grad()
    """,
    "while_loop": """
        import torch

        step = 0
        while step < max_steps:
            batch = next(iterator)
            loss = model(batch["input"]).mean()
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
            optimizer.zero_grad()
            step += 1
    """,
    "two_forward_passes": """
        import torch

        for x, y in loader:
            optimizer.zero_grad()
            clean_loss = criterion(model(x), y)
            clean_loss.backward(retain_graph=True)  # GL002
            noisy_loss = criterion(model(x + 0.1 * torch.randn_like(x)), y)
            noisy_loss.backward()
            optimizer.step()
    """,
    "trainer_method": """
        import torch

        class Trainer:
            def __init__(self, model, loader):
                self.model = model
                self.loader = loader
                self.criterion = torch.nn.CrossEntropyLoss()
                self.optimizer = torch.optim.Adam(model.parameters())

            def train_epoch(self):
                total = 0.0
                for images, targets in self.loader:
                    self.optimizer.zero_grad()
                    loss = self.criterion(self.model(images), targets)
                    loss.backward(retain_graph=True)  # GL002
                    self.optimizer.step()
                    total += loss.item()
                return total
    """,
    "try_except_around_backward": """
        model.train()
        for batch in loader:
            try:
                loss = compute_loss(model, batch)
                loss.backward(retain_graph=True)  # GL002
            except RuntimeError as err:
                print("skipping batch", err)
                optimizer.zero_grad()
                continue
            optimizer.step()
            optimizer.zero_grad()
    """,
    "logging_after_backward": """
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter()
        for step, (x, y) in enumerate(loader):
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
            writer.add_scalar("loss", loss, step)
            logger.info("step %d loss %.4f", step, loss.item())
    """,
    "hidden_reset_each_batch": """
        import torch

        for x, y in loader:
            h = torch.zeros(2, x.size(0), 128)
            out, h = lstm(x, h)
            loss = criterion(fc(out[:, -1]), y)
            optimizer.zero_grad()
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
    """,
    "samples_kept_for_a_plot": """
        import torch
        import matplotlib.pyplot as plt

        bce = torch.nn.BCEWithLogitsLoss()
        ones = torch.ones(256, 1)
        history = []
        for step in range(1000):
            fake = gen(torch.randn(256, 8))
            g_loss = bce(disc(fake), ones)
            opt_g.zero_grad()
            g_loss.backward(retain_graph=True)  # GL002
            opt_g.step()
            if step % 100 == 0:
                history.append(fake)
        plt.hist(torch.cat(history).detach().numpy().ravel(), bins=100)
    """,
    "target_loaded_before_loop": """
        import torch
        import torchvision.transforms as T
        from PIL import Image

        target = T.Compose([T.Resize(64), T.ToTensor()])(Image.open("photo.jpg").convert("RGB"))
        canvas = torch.rand_like(target, requires_grad=True)
        optimizer = torch.optim.Adam([canvas], lr=0.05)
        for it in range(100):
            optimizer.zero_grad()
            loss = (canvas - target).pow(2).mean()
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
    """,
    "regenerated_fake": """
        import torch

        bce = torch.nn.BCEWithLogitsLoss()
        ones, zeros = torch.ones(16, 1), torch.zeros(16, 1)
        for lr_img, hr_img in loader:
            sr_img = generator(lr_img)
            d_loss = bce(discriminator(hr_img), ones) + bce(discriminator(sr_img), zeros)
            opt_d.zero_grad()
            d_loss.backward(retain_graph=True)  # GL002
            opt_d.step()
            sr_img = generator(lr_img)
            g_loss = perceptual(sr_img, hr_img) + bce(discriminator(sr_img), ones)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
    """,
    "critic_steps_real_branch": """
        import torch

        bce = torch.nn.BCEWithLogitsLoss()
        ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)
        critic_steps = 5
        G, D = Translator(), Critic()
        for src, tgt in batches:
            translated = G(src)
            for _ in range(critic_steps):
                d_opt.zero_grad()
                real_loss = bce(D(tgt), ones)
                real_loss.backward(retain_graph=True)  # GL002
                fake_loss = bce(D(translated), zeros)
                fake_loss.backward(retain_graph=True)
                d_opt.step()
            g_opt.zero_grad()
            g_loss = bce(D(translated), ones)
            g_loss.backward()
            g_opt.step()
    """,
    "repackaged_hidden": """
        import argparse

        import torch

        import data

        parser = argparse.ArgumentParser()
        parser.add_argument("--data", default="./data/wikitext-2")
        args = parser.parse_args()
        corpus = data.Corpus(args.data)

        criterion = torch.nn.NLLLoss()

        def batchify(data, bsz):
            nbatch = data.size(0) // bsz
            data = data.narrow(0, 0, nbatch * bsz)
            return data.view(bsz, -1).t().contiguous()

        def get_batch(source, i):
            seq_len = min(35, len(source) - 1 - i)
            return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].view(-1)

        def repackage_hidden(h):
            if isinstance(h, torch.Tensor):
                return h.detach()
            return tuple(repackage_hidden(v) for v in h)

        data = batchify(corpus.train, 20)
        hidden = model.init_hidden(20)
        for i in range(0, data.size(0) - 1, 35):
            inputs, targets = get_batch(data, i)
            hidden = repackage_hidden(hidden)
            model.zero_grad()
            output, hidden = model(inputs, hidden)
            loss = criterion(output, targets)
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
    """,
    "reassigned_loss_name": """
        loss = criterion(model(x1), y1)
        loss.backward(retain_graph=True)  # GL002
        loss = criterion(model(x2), y2)
        loss.backward()
    """,
    "generated_samples_concatenated": """
        import torch

        bce = torch.nn.BCELoss()
        ones = torch.ones(2, 1)
        epoch_data = torch.zeros(0, 2)
        for i in range(100):
            fake = gen(torch.randn(2, 2))
            g_opt.zero_grad()
            g_loss = bce(disc(fake), ones)
            g_loss.backward(retain_graph=True)  # GL002
            g_opt.step()
            epoch_data = torch.cat([epoch_data, fake])
        print(epoch_data.detach().mean())
    """,
    "module_keeps_detached_state": """
        import torch
        from torch import nn

        class Tagger(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(3, 3)
                self.hidden = None

            def forward(self, x):
                out, hidden = self.lstm(x, self.hidden)
                self.hidden = tuple(h.detach() for h in hidden)
                return out

        model = Tagger()
        crit = nn.MSELoss()
        for x, y in data:
            model.zero_grad()
            loss = crit(model(x), y)
            loss.backward(retain_graph=True)  # GL002
            opt.step()
    """,
    "weighted_loss_with_plain_parameters": """
        def train(model, loader, optimizer, epochs: int, reg_weight=1e-4, device="cpu"):
            for epoch in range(epochs):
                for x, y in loader:
                    x, y = x.to(device), y.to(device)
                    out = model(x)
                    loss = criterion(out, y) + reg_weight * out.pow(2).mean()
                    optimizer.zero_grad()
                    loss.backward(retain_graph=True)  # GL002
                    optimizer.step()
    """,
    "accumulated_loss_reset_after_backward": """
        import torch
        from torch.nn.functional import cross_entropy

        for section in sections:
            loss = 0
            hidden = model.init_hidden()
            for k in range(section.size(0) - 1):
                output, hidden = model(section[k], hidden)
                loss += cross_entropy(output.view(1, -1), section[k + 1])
                if (k + 1) % bptt_limit == 0:
                    optimizer.zero_grad()
                    loss.backward(retain_graph=True)  # GL002
                    optimizer.step()
                    loss = 0
                    hidden = hidden.detach()
    """,
    "no_grad_target_net": """
        import torch

        for state, action, reward, next_state in replay:
            with torch.no_grad():
                target = reward + 0.99 * target_net(next_state).max(1)[0]
            q = policy_net(state).gather(1, action)
            loss = torch.nn.functional.smooth_l1_loss(q.squeeze(1), target)
            optimizer.zero_grad()
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
    """,
    "policy_distribution_and_value_of_separate_networks": """
        import torch
        import torch.nn as nn

        actor, critic = nn.Linear(4, 2), nn.Linear(4, 1)
        opt = torch.optim.Adam([*actor.parameters(), *critic.parameters()])
        for update in range(4):
            obs, returns = torch.randn(20, 4), torch.randn(20)
            dist = torch.distributions.Categorical(logits=actor(obs))
            values = critic(obs).squeeze(-1)
            a = dist.sample()
            adv = (returns - values).detach()
            pi_loss = -(dist.log_prob(a) * adv).mean()
            v_loss = (returns - values).pow(2).mean()
            opt.zero_grad()
            pi_loss.backward(retain_graph=True)  # GL002
            v_loss.backward()
            opt.step()
    """,
    "replay_buffer_methods_do_not_link_two_fresh_losses": """
        import torch

        rb = ReplayBuffer(buffer_size, obs_space, act_space, device)
        for step in range(1000):
            rb.add(obs, next_obs, actions, rewards)
            batch = rb.sample(64)
            q_loss = (q_net(batch.obs) - batch.target).pow(2).mean()
            opt.zero_grad()
            q_loss.backward(retain_graph=True)  # GL002
            opt.step()
            pi_loss = -q_net(actor(rb.sample(64).obs)).mean()
            pi_loss.backward()
    """,
    "normal_policy_entropy_of_one_network_value_of_another": """
        import torch
        from torch.distributions import Normal

        for obs, returns in loader:
            mu, log_std = policy(obs)
            dist = Normal(mu, log_std.exp())
            ent_loss = -dist.entropy().mean()
            v_loss = (critic(obs) - returns).pow(2).mean()
            opt.zero_grad()
            ent_loss.backward(retain_graph=True)  # GL002
            v_loss.backward()
            opt.step()
    """,
}

CLEAN = {
    "two_losses_over_a_checkpointed_trunk": """
        import torch
        from torch import nn
        from torch.utils.checkpoint import checkpoint

        trunk = nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 12))
        head_a, head_b = nn.Linear(12, 1), nn.Linear(12, 1)
        opt = torch.optim.SGD([*trunk.parameters(), *head_a.parameters(), *head_b.parameters()], lr=0.01)
        for step in range(4):
            x = torch.randn(5, 6)
            feats = checkpoint(trunk, x, use_reentrant=False)
            loss_a = head_a(feats).pow(2).mean()
            loss_b = head_b(feats).abs().mean()
            opt.zero_grad()
            loss_a.backward(retain_graph=True)
            loss_b.backward()
            opt.step()
    """,
    "actor_critic_outputs_of_one_forward_through_a_distribution": """
        import torch
        import torch.nn as nn

        class ActorCritic(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(4, 32), nn.Tanh())
                self.policy = nn.Linear(32, 2)
                self.value = nn.Linear(32, 1)

            def forward(self, obs):
                h = self.body(obs)
                return self.policy(h), self.value(h).squeeze(-1)

        net = ActorCritic()
        opt = torch.optim.Adam(net.parameters())
        for update in range(4):
            obs, returns = torch.randn(20, 4), torch.randn(20)
            logits, values = net(obs)
            dist = torch.distributions.Categorical(logits=logits)
            a = dist.sample()
            adv = (returns - values).detach()
            pi_loss = -(dist.log_prob(a) * adv).mean()
            v_loss = 0.5 * (returns - values).pow(2).mean()
            opt.zero_grad()
            pi_loss.backward(retain_graph=True)
            v_loss.backward()
            opt.step()
    """,
    "entropy_of_an_imported_distribution_then_value_of_the_same_forward": """
        import torch
        from torch.distributions import Normal

        def update(net, opt, obs, returns):
            mu, std, value = net(obs)
            dist = Normal(mu, std)
            ent_loss = -dist.entropy().mean()
            v_loss = (value - returns).pow(2).mean()
            opt.zero_grad()
            ent_loss.backward(retain_graph=True)
            v_loss.backward()
            opt.step()
    """,
    "project_distribution_built_from_the_shared_output": """
        from distributions import FixedCategorical

        def update(model, opt, x, y):
            feats = model(x)
            dist = FixedCategorical(logits=feats)
            first = -dist.log_probs(y).mean()
            second = feats.pow(2).mean()
            opt.zero_grad()
            first.backward(retain_graph=True)
            second.backward()
            opt.step()
    """,
    "two_outputs_of_one_forward_unpacked": """
        def update(net, opt, obs):
            logits, values = net(obs)
            first = logits.logsumexp(-1).mean()
            second = values.mean()
            opt.zero_grad()
            first.backward(retain_graph=True)
            second.backward()
            opt.step()
    """,
    "step_closure_also_called_and_backpropagated": """
        import torch

        opt = torch.optim.LBFGS(model.parameters())
        def closure():
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward(retain_graph=True)
            return loss
        for _ in range(5):
            opt.step(closure)
        final = closure()
        final.backward()  # walks the graph the closure retained
    """,
    "step_closure_second_loss_on_the_graph": """
        import torch

        opt = torch.optim.LBFGS(model.parameters())
        def closure():
            opt.zero_grad()
            out = model(x)
            loss = (out - y).pow(2).mean()
            loss.backward(retain_graph=True)
            out.abs().mean().backward()
            return loss
        opt.step(closure)
    """,
    "function_passed_to_something_else": """
        import torch

        def closure():
            loss = (model(x) - y).pow(2).mean()
            loss.backward(retain_graph=True)
            return loss
        trainer.fit(closure)
    """,
    "gan_needs_retain": """
        import torch
        from torch import nn

        bce = nn.BCELoss()
        for real in loader:
            fake = G(torch.randn(64, 100))
            d_loss = bce(D(real), ones) + bce(D(fake), zeros)
            opt_d.zero_grad()
            d_loss.backward(retain_graph=True)
            opt_d.step()
            g_loss = bce(D(fake), ones)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
    """,
    "multitask_shared_trunk": """
        features = trunk(x)
        loss1 = crit1(head1(features), y1)
        loss2 = crit2(head2(features), y2)
        optimizer.zero_grad()
        loss1.backward(retain_graph=True)
        loss2.backward()
        optimizer.step()
    """,
    "gradient_penalty": """
        import torch

        def gradient_penalty(critic, real, fake):
            alpha = torch.rand(real.size(0), 1, 1, 1)
            mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            scores = critic(mixed)
            grads = torch.autograd.grad(
                outputs=scores, inputs=mixed, grad_outputs=torch.ones_like(scores),
                create_graph=True, retain_graph=True,
            )[0]
            return ((grads.view(grads.size(0), -1).norm(2, dim=1) - 1) ** 2).mean()
    """,
    "conditional_retain": """
        for i, loss in enumerate(losses):
            loss.backward(retain_graph=i < len(losses) - 1)
        for i in range(3):
            out = model(x)
            out.sum().backward(retain_graph=i > 0)
    """,
    "retain_from_variable": """
        def step(loss, keep):
            loss.backward(retain_graph=keep)

        for x in loader:
            loss = model(x).mean()
            loss.backward(retain_graph=not last)
    """,
    "tbptt_carried_hidden": """
        import torch

        hidden = torch.zeros(1, 8, 32)
        for x, y in sequence_chunks:
            output, hidden = rnn(x, hidden)
            loss = criterion(decoder(output), y)
            optimizer.zero_grad()
            loss.backward(retain_graph=True)
            optimizer.step()
    """,
    "hessian_vector_products": """
        import torch

        def hvps(loss, params, vectors):
            grads = torch.autograd.grad(loss, params, create_graph=True)
            out = []
            for v in vectors:
                hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
                out.append(hv)
            return out
    """,
    "loss_returned": """
        def training_step(model, x, y):
            out = model(x)
            loss = criterion(out, y)
            loss.backward(retain_graph=True)
            return loss
    """,
    "losses_kept_for_a_final_backward": """
        import torch

        history = []
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward(retain_graph=True)
            history.append(loss)
        torch.stack(history).mean().backward()
    """,
    "losses_kept_on_self": """
        class Trainer:
            def step(self, x, y):
                loss = self.criterion(self.model(x), y)
                loss.backward(retain_graph=True)
                self.history.append(loss)
    """,
    "list_returned": """
        def run(model, batches):
            outputs = []
            for x in batches:
                out = model(x)
                out.mean().backward(retain_graph=True)
                outputs.append(out)
            return outputs
    """,
    "root_is_parameter": """
        def backward_twice(loss):
            loss.backward(retain_graph=True)

        def apply(self):
            self.loss.backward(retain_graph=True)
    """,
    "loop_over_losses": """
        losses = [crit(head(features), y) for head in heads]
        for loss in losses:
            loss.backward(retain_graph=True)
        optimizer.step()
    """,
    "accumulated_total_backward_later": """
        total = 0
        for x, y in chunks:
            loss = criterion(model(x), y)
            loss.backward(retain_graph=True)
            total = total + loss
        total.backward()
    """,
    "star_kwargs": """
        def run(loss, **backward_kwargs):
            out = loss * 2
            out.backward(retain_graph=True, **backward_kwargs)
    """,
    "features_computed_before_loop": """
        import torch

        feats = backbone(images)
        for step in range(10):
            logits = classifier(feats)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward(retain_graph=True)
            optimizer.step()
    """,
    "stored_on_self": """
        class Probe:
            def run(self, x):
                out = self.model(x)
                self.last_output = out
                out.sum().backward(retain_graph=True)
    """,
    "passed_to_unknown_helper_after": """
        for x in loader:
            loss = model(x).mean()
            loss.backward(retain_graph=True)
            second_order_update(loss)
    """,
    "two_outputs_of_one_forward": """
        for img, age, gender in loader:
            age_pred, gender_logits = model(img)
            age_loss = l1(age_pred, age)
            gender_loss = ce(gender_logits, gender)
            age_loss.backward(retain_graph=True)
            gender_loss.backward()
    """,
    "features_from_a_library_helper": """
        from utils import extract_features

        feats = extract_features(backbone, images)
        backbone.eval()
        for step in range(10):
            loss = head(feats).mean()
            loss.backward(retain_graph=True)
    """,
    "capitalised_generator_instance": """
        G = Generator()
        D = Discriminator()
        for real in loader:
            fake = G(torch.randn(64, 100))
            d_loss = bce(D(real), ones) + bce(D(fake), zeros)
            d_loss.backward(retain_graph=True)
            g_loss = bce(D(fake), ones)
            g_loss.backward()
    """,
    "module_keeps_hidden_on_self": """
        import torch
        from torch import nn

        class Tagger(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(3, 3)
                self.hidden = None

            def forward(self, x):
                out, self.hidden = self.lstm(x, self.hidden)
                return out

        model = Tagger()
        crit = nn.MSELoss()
        for x, y in data:
            model.zero_grad()
            loss = crit(model(x), y)
            loss.backward(retain_graph=True)
            opt.step()
    """,
    "tensor_parameter_used_in_the_loop": """
        def fit(head, features, labels, opt, steps=100):
            for _ in range(steps):
                loss = torch.nn.functional.cross_entropy(head(features), labels)
                opt.zero_grad()
                loss.backward(retain_graph=True)
                opt.step()
    """,
    "log_probs_kept_on_the_policy": """
        import torch

        policy = Policy()
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
        for episode in range(100):
            state = env.reset()
            for t in range(1000):
                probs = policy(torch.from_numpy(state).float())
                action = torch.distributions.Categorical(probs).sample()
                policy.saved_log_probs.append(torch.distributions.Categorical(probs).log_prob(action))
                state, reward, done, _ = env.step(action.item())
                if done:
                    break
            loss = -torch.cat(policy.saved_log_probs).sum()
            optimizer.zero_grad()
            loss.backward(retain_graph=True)
            optimizer.step()
    """,
    "accumulated_loss_not_reset": """
        for section in sections:
            loss = 0
            hidden = model.init_hidden()
            for k in range(section.size(0) - 1):
                output, hidden = model(section[k], hidden)
                loss += criterion(output, section[k + 1])
                if (k + 1) % bptt_limit == 0:
                    optimizer.zero_grad()
                    loss.backward(retain_graph=True)
                    optimizer.step()
                    hidden = hidden.detach()
    """,
    "auxiliary_loss_in_branch": """
        feats = encoder(x)
        if use_aux:
            aux_head(feats).mean().backward(retain_graph=True)
        main_head(feats).mean().backward()
    """,
    "later_backward_in_nested_loop": """
        feats = encoder(x)
        recon = decoder(feats)
        recon_loss = mse(recon, x)
        recon_loss.backward(retain_graph=True)
        for head, target in zip(heads, targets):
            ce(head(feats), target).backward()
    """,
    "lightning_gan_manual": """
        import torch
        import lightning as L

        class GAN(L.LightningModule):
            def training_step(self, batch, batch_idx):
                opt_g, opt_d = self.optimizers()
                fake = self.generator(torch.randn(batch.size(0), 16))
                d_loss = self.adversarial(self.discriminator(fake), False)
                opt_d.zero_grad()
                self.manual_backward(d_loss, retain_graph=True)
                opt_d.step()
                g_loss = self.adversarial(self.discriminator(fake), True)
                opt_g.zero_grad()
                self.manual_backward(g_loss)
                opt_g.step()
    """,
    "accelerate_two_losses_shared": """
        for batch in loader:
            hidden = model.encoder(batch["x"])
            loss_a = head_a(hidden).mean()
            loss_b = head_b(hidden).mean()
            accelerator.backward(loss_a, retain_graph=True)
            accelerator.backward(loss_b)
            optimizer.step()
            optimizer.zero_grad()
    """,
    "closure_captures_graph": """
        out = model(x)
        def closure():
            loss = criterion(out, y)
            loss.backward()
            return loss
        out.mean().backward(retain_graph=True)
        optimizer.step(closure)
    """,
    "meta_learning_create_graph": """
        for task in tasks:
            loss = inner_loss(model, task)
            loss.backward(create_graph=True, retain_graph=True)
            meta_opt.step()
    """,
    "global_escape": """
        def forward_and_backward(x):
            global last_out
            last_out = model(x)
            last_out.sum().backward(retain_graph=True)
    """,
    "later_backward_in_finally": """
        shared = encoder(x)
        aux = aux_head(shared).mean()
        try:
            aux.backward(retain_graph=True)
        finally:
            main_head(shared).mean().backward()
    """,
    "previous_loss_used_next_iteration": """
        prev = None
        for x in loader:
            loss = model(x).mean()
            if prev is not None:
                (loss + prev).backward()
            loss.backward(retain_graph=True)
            prev = loss
    """,
    "outputs_of_one_forward_walked_through_pytree": """
        import torch
        from torch.utils import _pytree as pytree

        def outs_and_grads(fn, graph_inps, inps):
            outs = fn(*graph_inps)
            for out in pytree.tree_leaves(outs):
                if isinstance(out, torch.Tensor) and out.requires_grad:
                    out.sum().backward(retain_graph=True)
            grads = [inp.grad for inp in pytree.tree_leaves(inps) if isinstance(inp, torch.Tensor)]
            return outs, grads
    """,
    "outputs_of_one_forward_walked_directly": """
        def backward_each_output(model, x):
            outs = model(x)
            for out in outs:
                out.sum().backward(retain_graph=True)
    """,
    "outputs_of_a_forward_called_in_the_loop_header": """
        def backward_each_output(model, x):
            for i, o in enumerate(model(x)):
                (o * i).mean().backward(retain_graph=True)
    """,
    "losses_of_one_forward_walked_with_enumerate": """
        def per_head_backward(model, x, y, criterion):
            logits = model(x)
            losses = [criterion(logits[:, k], y[:, k]) for k in range(3)]
            for k, loss in enumerate(losses):
                (loss * 0.5).backward(retain_graph=True)
    """,
    "named_outputs_walked_with_items": """
        def per_output_backward(model, x):
            outs = model(x)
            for name, out in outs.items():
                out.mean().backward(retain_graph=True)
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


def test_configured_backward_function_counts_as_later_backward():
    source = textwrap.dedent(
        """
        features = encoder(x)
        loss1 = head1(features).mean()
        loss1.backward(retain_graph=True)
        z = run_backward(head2(features).mean())
        """
    )
    assert [f.line for f in _lint(source)] == [4]
    assert _lint(source, backward_functions=("run_backward",)) == []


def test_module_helper_that_runs_backward_counts_as_later_backward():
    source = textwrap.dedent(
        """
        def second_pass(loss):
            loss.backward()

        shared = trunk(x)
        first = head(shared).sum()
        first.backward(retain_graph=True)
        total = second_pass(other(shared).sum())
        """
    )
    assert _lint(source) == []


def test_message_names_the_call_and_the_tensor():
    source = textwrap.dedent(FLAGGED["module_level_loop"])
    (finding,) = _lint(source)
    assert finding.severity == "warning"
    assert finding.name == "unnecessary-retain-graph"
    assert "`loss.backward(retain_graph=True)`" in finding.message
    assert "graph of `loss`" in finding.message
    assert "drop `retain_graph=True`" in finding.message


def test_finding_spans_the_whole_call():
    source = "for x in data:\n    loss = f(x)\n    loss.backward(\n        retain_graph=True,\n    )\n"
    (finding,) = _lint(source)
    assert (finding.line, finding.column, finding.end_line, finding.end_column) == (3, 5, 5, 6)


@pytest.mark.parametrize(
    "call, fixed",
    [
        ("loss.backward(retain_graph=True)", "loss.backward()"),
        ("loss.backward( retain_graph=True )", "loss.backward( )"),
        ("loss.backward(grad, retain_graph=True)", "loss.backward(grad)"),
        ("loss.backward(retain_graph=True, inputs=params)", "loss.backward(inputs=params)"),
        ("loss.backward(gradient=g, retain_graph=True, inputs=params)", "loss.backward(gradient=g, inputs=params)"),
        ("loss.backward(grad, retain_graph=True,)", "loss.backward(grad,)"),
        ("torch.autograd.grad(loss, params, retain_graph=True)", "torch.autograd.grad(loss, params)"),
        ("accelerator.backward(loss, retain_graph=True)", "accelerator.backward(loss)"),
        ("scaler.scale(loss).backward(retain_graph=True)", "scaler.scale(loss).backward()"),
        ("loss.backward(None, True)", "loss.backward(None)"),
        ("loss.backward(None, True, False, [w])", "loss.backward(None, False, False, [w])"),
    ],
)
def test_fix_removes_the_argument(call, fixed):
    source = f"import torch\n\nfor x in data:\n    loss = f(x)\n    {call}\n    step()\n"
    (finding,) = _lint(source)
    assert finding.fix is not None and finding.fix.description
    result = _apply(source, finding.fix)
    assert result == source.replace(call, fixed)
    cst.parse_module(result)
    assert _lint(result) == []


def test_fix_of_a_multiline_call_keeps_the_layout():
    source = textwrap.dedent(
        """
        for x in data:
            loss = f(x)
            loss.backward(
                gradient,
                retain_graph=True,
            )
        """
    )
    (finding,) = _lint(source)
    result = _apply(source, finding.fix)
    assert result == source.replace("gradient,\n        retain_graph=True,", "gradient,")
    cst.parse_module(result)


def test_fix_of_the_seed_example_only_touches_the_last_call():
    source = textwrap.dedent(FLAGGED["seed_repeated_backward"])
    (finding,) = _lint(source)
    result = _apply(source, finding.fix)
    assert result.count("retain_graph=True") == 2
    assert "out.backward(torch.ones_like(inp))  # GL002" in result
    assert _lint(result) == []


def test_fix_offsets_count_characters_not_bytes():
    source = '# données\nfor x in data:\n    loss = f(x)  # «perte»\n    loss.backward(retain_graph=True)\n'
    (finding,) = _lint(source)
    assert _apply(source, finding.fix) == source.replace("retain_graph=True", "")


# ---------------------------------------------------------------------------------------------
# Graphs followed past the function: Lightning's backward hook, losses held in attributes across a
# trainer class's methods, functions whose parameters are summarised from their call sites.

FLAGGED_FOLLOWED = {
    "lightning_backward_hook": """
        import torch.nn.functional as F
        import pytorch_lightning as pl

        class Module(pl.LightningModule):
            def training_step(self, batch, batch_idx):
                x, y = batch
                return F.mse_loss(self.layer(x), y)

            def backward(self, loss, *args, **kwargs):
                loss.backward(retain_graph=True)  # GL002
    """,
    "lightning_backward_hook_old_signature": """
        import torch
        import lightning as L

        class Classifier(L.LightningModule):
            def __init__(self, lr: float = 1e-3):
                super().__init__()
                self.net = torch.nn.Linear(32, 10)
                self.lr = lr

            def training_step(self, batch, batch_idx, optimizer_idx=0):
                x, y = batch
                loss = torch.nn.functional.cross_entropy(self.net(x), y)
                self.log("train/loss", loss)
                return {"loss": loss}

            def backward(self, trainer, loss, optimizer, optimizer_idx):
                loss.backward(retain_graph=True)  # GL002

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=self.lr)
    """,
    "lightning_hook_through_a_base_module": """
        import torch
        from pytorch_lightning import LightningModule

        class Base(LightningModule):
            def backward(self, loss, *args, **kwargs):
                loss.backward(retain_graph=True)  # GL002

        class Regressor(Base):
            def training_step(self, batch, batch_idx):
                x, y = batch
                return torch.nn.functional.l1_loss(self.model(x), y)
    """,
    "lightning_hook_manual_one_backward_per_graph": """
        import torch
        import lightning.pytorch as pl

        class GAN(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False

            def training_step(self, batch, batch_idx):
                opt_g, opt_d = self.optimizers()
                real, _ = batch
                z = torch.randn(real.size(0), 64, device=self.device)
                fake = self.generator(z)
                d_real = self.criterion(self.discriminator(real), 1)
                d_loss = d_real + self.criterion(self.discriminator(fake.detach()), 0)
                opt_d.zero_grad()
                self.manual_backward(d_loss)
                opt_d.step()
                g_loss = self.criterion(self.discriminator(fake), 1)
                opt_g.zero_grad()
                self.manual_backward(g_loss)
                opt_g.step()

            def backward(self, loss, *args, **kwargs):
                loss.backward(retain_graph=True)  # GL002
    """,
    "attribute_held_loss_pix2pix": """
        import torch.nn.functional as F

        class Pix2Pix:
            def set_input(self, batch): self.src, self.dst = batch
            def forward(self): self.out = self.net(self.src)
            def backward_net(self):
                self.loss = F.l1_loss(self.out, self.dst)
                self.loss.backward(retain_graph=True)  # GL002
            def optimize(self):
                self.forward(); self.opt.zero_grad(); self.backward_net(); self.opt.step()

        for batch in loader:
            model.set_input(batch); model.optimize()
    """,
    "pix2pix_generator_and_discriminator": """
        import torch

        class Pix2PixModel:
            def __init__(self, opt, netG, netD):
                self.opt = opt
                self.netG = netG
                self.netD = netD
                self.criterionGAN = torch.nn.BCEWithLogitsLoss()
                self.criterionL1 = torch.nn.L1Loss()
                self.optimizer_G = torch.optim.Adam(netG.parameters(), lr=opt.lr)
                self.optimizer_D = torch.optim.Adam(netD.parameters(), lr=opt.lr)

            def set_input(self, input):
                self.real_A = input["A"].to(self.device)
                self.real_B = input["B"].to(self.device)

            def forward(self):
                self.fake_B = self.netG(self.real_A)

            def backward_D(self):
                fake_AB = torch.cat((self.real_A, self.fake_B), 1)
                pred_fake = self.netD(fake_AB.detach())
                self.loss_D_fake = self.criterionGAN(pred_fake, torch.zeros_like(pred_fake))
                real_AB = torch.cat((self.real_A, self.real_B), 1)
                pred_real = self.netD(real_AB)
                self.loss_D_real = self.criterionGAN(pred_real, torch.ones_like(pred_real))
                self.loss_D = (self.loss_D_fake + self.loss_D_real) * 0.5
                self.loss_D.backward()

            def backward_G(self):
                fake_AB = torch.cat((self.real_A, self.fake_B), 1)
                pred_fake = self.netD(fake_AB)
                self.loss_G_GAN = self.criterionGAN(pred_fake, torch.ones_like(pred_fake))
                self.loss_G_L1 = self.criterionL1(self.fake_B, self.real_B) * self.opt.lambda_L1
                self.loss_G = self.loss_G_GAN + self.loss_G_L1
                self.loss_G.backward(retain_graph=True)  # GL002

            def optimize_parameters(self):
                self.forward()
                self.optimizer_D.zero_grad()
                self.backward_D()
                self.optimizer_D.step()
                self.optimizer_G.zero_grad()
                self.backward_G()
                self.optimizer_G.step()

        def train(model, dataset, epochs: int):
            for epoch in range(epochs):
                for i, data in enumerate(dataset):
                    model.set_input(data)
                    model.optimize_parameters()
    """,
    "cyclegan_discriminator_sees_detached_fakes": """
        import torch

        class CycleGAN:
            def set_input(self, batch):
                self.real_A, self.real_B = batch

            def forward(self):
                self.fake_B = self.netG_A(self.real_A)
                self.rec_A = self.netG_B(self.fake_B)

            def backward_G(self):
                self.loss_G_A = self.criterionGAN(self.netD_A(self.fake_B), True)
                self.loss_cycle_A = self.criterionCycle(self.rec_A, self.real_A) * 10.0
                self.loss_G = self.loss_G_A + self.loss_cycle_A
                self.loss_G.backward(retain_graph=True)  # GL002

            def backward_D(self):
                pred_real = self.netD_A(self.real_B)
                pred_fake = self.netD_A(self.fake_B.detach())
                self.loss_D_A = (self.criterionGAN(pred_real, True) + self.criterionGAN(pred_fake, False)) * 0.5
                self.loss_D_A.backward()

            def optimize_parameters(self):
                self.forward()
                self.optimizer_G.zero_grad()
                self.backward_G()
                self.optimizer_G.step()
                self.optimizer_D.zero_grad()
                self.backward_D()
                self.optimizer_D.step()

        for batch in loader:
            model.set_input(batch)
            model.optimize_parameters()
    """,
    "attribute_loss_returned_at_the_end_of_the_method": """
        class Trainer:
            def compute(self):
                self.pred = self.model(self.inputs)

            def backward_loss(self):
                self.loss = self.criterion(self.pred, self.targets)
                self.loss.backward(retain_graph=True)  # GL002
                return self.loss

            def step(self):
                self.compute()
                self.optimizer.zero_grad()
                self.backward_loss()
                self.optimizer.step()

            def fit(self, loader):
                for inputs, targets in loader:
                    self.inputs, self.targets = inputs, targets
                    self.step()
    """,
    "discriminator_step_behind_a_flag": """
        class GANModel:
            def set_input(self, data):
                self.real = data[0]
                self.z = data[1]

            def forward(self):
                self.fake = self.G(self.z)

            def backward_D(self):
                self.loss_D = self.gan_loss(self.D(self.real), True) + self.gan_loss(self.D(self.fake.detach()), False)
                self.loss_D.backward(retain_graph=True)  # GL002

            def backward_G(self):
                self.loss_G = self.gan_loss(self.D(self.fake), True)
                self.loss_G.backward()

            def optimize_parameters(self):
                self.forward()
                if self.train_discriminator:
                    self.opt_D.zero_grad()
                    self.backward_D()
                    self.opt_D.step()
                self.opt_G.zero_grad()
                self.backward_G()
                self.opt_G.step()

        for data in loader:
            model.set_input(data)
            model.optimize_parameters()
    """,
    "per_batch_method_with_inner_steps": """
        class Trainer:
            def train_step(self, x, y):
                for k in range(3):
                    loss = self.crit(self.model(x), y)
                    self.opt.zero_grad()
                    loss.backward(retain_graph=True)  # GL002
                    self.opt.step()

            def fit(self, loader):
                for x, y in loader:
                    self.train_step(x, y)
    """,
    "helper_taking_the_loss": """
        import torch.nn.functional as F

        def update(opt, loss):
            opt.zero_grad()
            loss.backward(retain_graph=True)  # GL002
            opt.step()

        for x, y in loader:
            update(opt, F.cross_entropy(model(x), y))
    """,
    "helper_taking_the_loss_by_keyword": """
        def update(optimizer, loss, clip: float = 1.0):
            optimizer.zero_grad()
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()

        def train(model, loader, optimizer, criterion):
            running = 0.0
            for images, labels in loader:
                loss = criterion(model(images), labels)
                update(optimizer=optimizer, loss=loss)
                running += loss.item()
            return running
    """,
    "method_taking_the_loss": """
        class Runner:
            def optimize(self, loss):
                self.optimizer.zero_grad()
                loss.backward(retain_graph=True)  # GL002
                self.optimizer.step()

            def run_epoch(self, loader):
                for x, y in loader:
                    self.optimize(self.criterion(self.model(x), y))
    """,
    "accelerate_helper_taking_the_loss": """
        from accelerate import Accelerator

        def backward_step(accelerator, optimizer, loss):
            accelerator.backward(loss, retain_graph=True)  # GL002
            optimizer.step()
            optimizer.zero_grad()

        accelerator = Accelerator()
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        for batch in loader:
            outputs = model(**batch)
            backward_step(accelerator, optimizer, outputs.loss)
    """,
    "helper_called_from_two_loops": """
        def fit_batch(model, opt, crit, x, y):
            for _ in range(2):
                out = model(x)
                loss = crit(out, y)
                opt.zero_grad()
                loss.backward(retain_graph=True)  # GL002
                opt.step()

        for x, y in train_loader:
            fit_batch(model, opt, crit, x, y)
        for x, y in finetune_loader:
            fit_batch(model, opt, crit, x, y)
    """,
    "actor_critic_update_with_ppo_epochs": """
        import torch

        class PPO:
            def update(self, states, actions, old_log_probs, returns, advantages):
                for _ in range(self.epochs):
                    dist, values = self.policy(states)
                    ratio = torch.exp(dist.log_prob(actions) - old_log_probs)
                    actor_loss = -torch.min(ratio * advantages, ratio.clamp(0.8, 1.2) * advantages).mean()
                    critic_loss = (returns - values).pow(2).mean()
                    loss = actor_loss + 0.5 * critic_loss
                    self.optimizer.zero_grad()
                    loss.backward(retain_graph=True)  # GL002
                    self.optimizer.step()

            def learn(self, loader):
                for states, actions, old_log_probs, returns, advantages in loader:
                    self.update(states, actions, old_log_probs, returns, advantages)
    """,
    "per_batch_function_with_micro_steps_over_its_input": """
        import torch

        def train_on_batch(model, optimizer, images, labels, steps: int = 4):
            for _ in range(steps):
                logits = model(images)
                loss = torch.nn.functional.cross_entropy(logits, labels)
                optimizer.zero_grad()
                loss.backward(retain_graph=True)  # GL002
                optimizer.step()

        def main(model, optimizer, loader):
            for images, labels in loader:
                images, labels = images.cuda(), labels.cuda()
                train_on_batch(model, optimizer, images, labels)
    """,
    "cyclegan_discriminator_helper_detaches_its_fake_argument": """
        class CycleGANModel:
            def set_input(self, input):
                self.real_A = input["A"]
                self.real_B = input["B"]

            def forward(self):
                self.fake_B = self.netG_A(self.real_A)
                self.fake_A = self.netG_B(self.real_B)

            def backward_D_basic(self, netD, real, fake):
                pred_real = netD(real)
                pred_fake = netD(fake.detach())
                loss_D = (self.criterionGAN(pred_real, True) + self.criterionGAN(pred_fake, False)) * 0.5
                loss_D.backward()
                return loss_D

            def backward_G(self):
                self.loss_G_A = self.criterionGAN(self.netD_A(self.fake_B), True)
                self.loss_G_B = self.criterionGAN(self.netD_B(self.fake_A), True)
                self.loss_G = self.loss_G_A + self.loss_G_B
                self.loss_G.backward(retain_graph=True)  # GL002

            def optimize_parameters(self):
                self.forward()
                self.optimizer_G.zero_grad()
                self.backward_G()
                self.optimizer_G.step()
                self.optimizer_D.zero_grad()
                self.loss_D_A = self.backward_D_basic(self.netD_A, self.real_B, self.fake_B)
                self.loss_D_B = self.backward_D_basic(self.netD_B, self.real_A, self.fake_A)
                self.optimizer_D.step()

        for i, data in enumerate(dataset):
            model.set_input(data)
            model.optimize_parameters()
    """,
    "gan_step_function_with_discriminator_helper": """
        import torch

        def discriminator_loss(D, real, fake):
            return bce(D(real), torch.ones(real.size(0), 1)) + bce(D(fake.detach()), torch.zeros(real.size(0), 1))

        def d_step(D, opt_d, real, fake):
            opt_d.zero_grad()
            loss = discriminator_loss(D, real, fake)
            loss.backward()
            opt_d.step()

        for real, _ in loader:
            fake = G(torch.randn(real.size(0), 100))
            g_loss = bce(D(fake), torch.ones(real.size(0), 1))
            opt_g.zero_grad()
            g_loss.backward(retain_graph=True)  # GL002
            opt_g.step()
            d_step(D, opt_d, real, fake)
    """,
    "lightning_hook_retains_for_the_discriminators_only": """
        import torch
        import pytorch_lightning as pl

        class CycleGAN(pl.LightningModule):
            def training_step(self, batch, batch_idx, optimizer_idx):
                real_A, real_B = batch
                if optimizer_idx == 0:
                    with torch.no_grad():
                        fake_A = self.netG_BA(real_B)
                    return self.criterionD(real_A, fake_A, self.netD_A)
                if optimizer_idx == 1:
                    with torch.no_grad():
                        fake_B = self.netG_AB(real_A)
                    return self.criterionD(real_B, fake_B, self.netD_B)
                loss_G, _, _ = self.criterionG(real_A, real_B, self.netG_AB, self.netG_BA)
                return loss_G

            def backward(self, loss, optimizer, optimizer_idx, *args, **kwargs):
                if optimizer_idx in (0, 1):
                    loss.backward(retain_graph=True)  # GL002
                else:
                    return super().backward(loss, optimizer, optimizer_idx, *args, **kwargs)
    """,
    "early_return_before_the_backward": """
        import torch

        def train_step(model, optimizer, criterion, x, y):
            out = model(x)
            if not torch.isfinite(out).all():
                return out
            loss = criterion(out, y)
            optimizer.zero_grad()
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
            return loss.item()
    """,
}

CLEAN_FOLLOWED = {
    "lightning_manual_backprops_twice_through_one_graph": """
        import torch
        import lightning as L

        class MultiHead(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                x, y = batch
                feats = self.trunk(x)
                opt.zero_grad()
                self.manual_backward(self.head_a(feats).mean())
                self.manual_backward(self.head_b(feats).mean())
                opt.step()

            def backward(self, loss, *args, **kwargs):
                loss.backward(retain_graph=True)
    """,
    "lightning_gan_keeps_fakes_on_the_module": """
        import torch
        import pytorch_lightning as pl

        class GAN(pl.LightningModule):
            def training_step(self, batch, batch_idx, optimizer_idx):
                real, _ = batch
                if optimizer_idx == 0:
                    self.generated = self.generator(torch.randn(real.size(0), 64))
                    return self.adversarial(self.discriminator(self.generated), 1)
                return self.adversarial(self.discriminator(self.generated), 0)

            def backward(self, loss, optimizer, optimizer_idx):
                loss.backward(retain_graph=True)
    """,
    "lightning_hook_next_to_its_own_backward": """
        import pytorch_lightning as pl

        class Model(pl.LightningModule):
            def training_step(self, batch, batch_idx):
                x, y = batch
                feats = self.encoder(x)
                aux = self.aux_head(feats).mean()
                aux.backward(retain_graph=True)
                return self.head(feats).mean()

            def backward(self, loss, *args, **kwargs):
                loss.backward(retain_graph=True)
    """,
    "cyclegan_discriminator_reuses_the_fake_graph": """
        class CycleGAN:
            def set_input(self, batch):
                self.real_A, self.real_B = batch

            def forward(self):
                self.fake_B = self.netG_A(self.real_A)

            def backward_G(self):
                self.loss_G = self.criterionGAN(self.netD_A(self.fake_B), True)
                self.loss_G.backward(retain_graph=True)

            def backward_D(self):
                pred_fake = self.netD_A(self.fake_B)
                self.loss_D = self.criterionGAN(pred_fake, False)
                self.loss_D.backward()

            def optimize_parameters(self):
                self.forward()
                self.backward_G()
                self.optimizer_G.step()
                self.backward_D()
                self.optimizer_D.step()

        for batch in loader:
            model.set_input(batch)
            model.optimize_parameters()
    """,
    "discriminator_retains_for_the_generator_step": """
        class GANModel:
            def set_input(self, data):
                self.real, self.z = data

            def forward(self):
                self.fake = self.G(self.z)

            def backward_D(self):
                self.loss_D = self.gan_loss(self.D(self.real), True) + self.gan_loss(self.D(self.fake), False)
                self.loss_D.backward(retain_graph=True)

            def backward_G(self):
                self.loss_G = self.gan_loss(self.D(self.fake), True)
                self.loss_G.backward()

            def optimize_parameters(self):
                self.forward()
                self.backward_D()
                self.opt_D.step()
                self.backward_G()
                self.opt_G.step()

        for data in loader:
            model.set_input(data)
            model.optimize_parameters()
    """,
    "driver_backpropagates_through_the_attribute_itself": """
        class Model:
            def set_input(self, batch):
                self.x, self.y = batch

            def forward(self):
                self.feats = self.trunk(self.x)

            def backward_main(self):
                self.loss_main = self.criterion(self.head(self.feats), self.y)
                self.loss_main.backward(retain_graph=True)

            def optimize(self):
                self.forward()
                self.backward_main()
                aux = self.aux_head(self.feats).mean()
                aux.backward()
                self.opt.step()

        for batch in loader:
            model.set_input(batch)
            model.optimize()
    """,
    "attribute_loss_walked_again_by_another_method": """
        class Model:
            def set_input(self, batch):
                self.x, self.y = batch

            def forward(self):
                self.out = self.net(self.x)

            def backward_net(self):
                self.loss = self.criterion(self.out, self.y)
                self.loss.backward(retain_graph=True)

            def optimize(self):
                self.forward()
                self.backward_net()
                self.opt.step()

            def second_pass(self):
                (self.loss * 0.1).backward()

        for batch in loader:
            model.set_input(batch)
            model.optimize()
            model.second_pass()
    """,
    "hidden_state_kept_on_the_module": """
        class LanguageModel:
            def set_input(self, batch):
                self.src, self.tgt = batch

            def forward(self):
                self.out, self.hidden = self.rnn(self.src, self.hidden)

            def backward_lm(self):
                self.loss = self.criterion(self.out, self.tgt)
                self.loss.backward(retain_graph=True)

            def optimize(self):
                self.forward()
                self.backward_lm()
                self.opt.step()

        for batch in loader:
            model.set_input(batch)
            model.optimize()
    """,
    "two_task_heads_share_an_attribute_trunk": """
        class MultiTask:
            def set_input(self, batch):
                self.x, self.y_a, self.y_b = batch

            def forward(self):
                self.shared = self.trunk(self.x)

            def backward_a(self):
                self.loss_a = self.crit_a(self.head_a(self.shared), self.y_a)
                self.loss_a.backward(retain_graph=True)

            def backward_b(self):
                self.loss_b = self.crit_b(self.head_b(self.shared), self.y_b)
                self.loss_b.backward()

            def optimize(self):
                self.forward()
                self.backward_a()
                self.backward_b()
                self.opt.step()

        for batch in loader:
            model.set_input(batch)
            model.optimize()
    """,
    "helper_loss_walked_again_by_the_caller": """
        def update(opt, loss):
            loss.backward(retain_graph=True)
            opt.step()

        for x, y in loader:
            loss = crit(model(x), y)
            update(opt, loss)
            (loss * 0.5).backward()
    """,
    "helper_given_a_running_total": """
        def update(opt, loss):
            loss.backward(retain_graph=True)
            opt.step()

        total = 0
        for x, y in loader:
            total = total + crit(model(x), y)
            update(opt, total)
    """,
    "helper_called_twice_through_a_shared_trunk": """
        def update(opt, loss):
            opt.zero_grad()
            loss.backward(retain_graph=True)
            opt.step()

        for x, y in loader:
            feats = backbone(x)
            update(opt_a, head_a(feats).mean())
            update(opt_b, head_b(feats).mean())
    """,
    "per_batch_method_given_features_with_a_graph": """
        class Trainer:
            def train_step(self, feats, y):
                for k in range(3):
                    loss = self.crit(self.head(feats), y)
                    loss.backward(retain_graph=True)
                    self.opt.step()

            def fit(self, loader):
                for x, y in loader:
                    self.train_step(self.backbone(x), y)
    """,
    "helper_passed_as_a_callback": """
        def update(opt, loss):
            loss.backward(retain_graph=True)
            opt.step()

        for x, y in loader:
            update(opt, crit(model(x), y))
        trainer.register_hook(update)
    """,
    "helper_called_with_unpacked_arguments": """
        def update(opt, loss):
            loss.backward(retain_graph=True)
            opt.step()

        for x, y in loader:
            update(*(opt, crit(model(x), y)))
    """,
    "helper_never_called_here": """
        def update(opt, loss):
            opt.zero_grad()
            loss.backward(retain_graph=True)
            opt.step()
    """,
    "gradient_penalty_in_a_per_batch_method": """
        import torch

        class WGANGP:
            def critic_step(self, real, z):
                fake = self.G(z).detach()
                eps = torch.rand(real.size(0), 1, 1, 1)
                interp = (eps * real + (1 - eps) * fake).requires_grad_(True)
                out = self.D(interp)
                grads = torch.autograd.grad(out.sum(), interp, create_graph=True, retain_graph=True)[0]
                penalty = ((grads.flatten(1).norm(dim=1) - 1) ** 2).mean()
                loss = self.D(fake).mean() - self.D(real).mean() + 10 * penalty
                loss.backward()

            def fit(self, loader):
                for real, z in loader:
                    self.critic_step(real, z)
    """,
    "hessian_vector_products_in_a_per_batch_helper": """
        import torch

        def curvature(model, x, y, vectors):
            loss = torch.nn.functional.mse_loss(model(x), y)
            grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
            flat = torch.cat([g.reshape(-1) for g in grads])
            out = []
            for v in vectors:
                hv = torch.autograd.grad(flat @ v, list(model.parameters()), retain_graph=True)
                out.append([h.detach() for h in hv])
            return out

        for x, y in loader:
            curvature(model, x, y, [torch.randn(n_params) for _ in range(3)])
    """,
    "actor_critic_shared_trunk_in_a_per_batch_method": """
        class A2C:
            def update(self, states, actions, returns):
                feats = self.trunk(states)
                log_probs = self.actor(feats).log_softmax(-1).gather(1, actions)
                values = self.critic(feats).squeeze(-1)
                advantage = (returns - values).detach()
                actor_loss = -(log_probs.squeeze(-1) * advantage).mean()
                critic_loss = (returns - values).pow(2).mean()
                self.optimizer.zero_grad()
                actor_loss.backward(retain_graph=True)
                critic_loss.backward()
                self.optimizer.step()

            def learn(self, loader):
                for states, actions, returns in loader:
                    self.update(states, actions, returns)
    """,
    "truncated_bptt_state_carried_by_the_caller": """
        class Trainer:
            def train_chunk(self, x, y, hidden):
                for _ in range(2):
                    out, new_hidden = self.rnn(x, hidden)
                    loss = self.crit(out, y)
                    loss.backward(retain_graph=True)
                    self.opt.step()

            def fit(self, chunks):
                hidden = None
                for x, y in chunks:
                    out, hidden = self.rnn(x, hidden)
                    self.train_chunk(x, y, hidden)
    """,
    "meta_learning_inner_loop_per_task": """
        import torch

        def adapt_and_evaluate(model, params, support_x, support_y, query_x, query_y, inner_lr: float = 0.4):
            fast = list(params)
            for _ in range(3):
                loss = torch.nn.functional.cross_entropy(model(support_x, fast), support_y)
                grads = torch.autograd.grad(loss, fast, create_graph=True)
                fast = [w - inner_lr * g for w, g in zip(fast, grads)]
            query_loss = torch.nn.functional.cross_entropy(model(query_x, fast), query_y)
            query_loss.backward(retain_graph=True)
            return fast

        for support_x, support_y, query_x, query_y in task_loader:
            adapt_and_evaluate(model, model.parameters(), support_x, support_y, query_x, query_y)
    """,
    "cyclegan_discriminator_helper_walks_its_fake_argument": """
        class CycleGANModel:
            def set_input(self, input):
                self.real_A = input["A"]
                self.real_B = input["B"]

            def forward(self):
                self.fake_B = self.netG_A(self.real_A)

            def backward_D_basic(self, netD, real, fake):
                loss_D = (self.criterionGAN(netD(real), True) + self.criterionGAN(netD(fake), False)) * 0.5
                loss_D.backward()
                return loss_D

            def backward_G(self):
                self.loss_G = self.criterionGAN(self.netD_A(self.fake_B), True)
                self.loss_G.backward(retain_graph=True)

            def optimize_parameters(self):
                self.forward()
                self.backward_G()
                self.optimizer_G.step()
                self.loss_D_A = self.backward_D_basic(self.netD_A, self.real_B, self.fake_B)
                self.optimizer_D.step()

        for i, data in enumerate(dataset):
            model.set_input(data)
            model.optimize_parameters()
    """,
    "outputs_unpacked_onto_self": """
        class Probe:
            def run(self, x):
                self.out, self.feats = self.model(x)
                self.out.sum().backward(retain_graph=True)
    """,
    "generator_yields_the_output_before_the_backward": """
        def step(model, x, y):
            out = model(x)
            yield out
            loss = (out - y).pow(2).mean()
            loss.backward(retain_graph=True)
    """,
}


@pytest.mark.parametrize("name", sorted(FLAGGED_FOLLOWED))
def test_flagged_followed(name):
    source = textwrap.dedent(FLAGGED_FOLLOWED[name])
    found = [(f.line, f.code) for f in _lint(source)]
    assert found == _marked(source)
    assert found, "a flagged case must mark at least one line"


@pytest.mark.parametrize("name", sorted(CLEAN_FOLLOWED))
def test_clean_followed(name):
    source = textwrap.dedent(CLEAN_FOLLOWED[name])
    assert [(f.line, f.code) for f in _lint(source)] == []


def test_followed_case_counts():
    assert len(FLAGGED_FOLLOWED) >= 15 and len(CLEAN_FOLLOWED) >= 20
    assert not set(FLAGGED_FOLLOWED) & set(FLAGGED) and not set(CLEAN_FOLLOWED) & set(CLEAN)


# Several files: the callers live in another module of the project.


def _project(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def _lint_file(tmp_path, name, root=True):
    path = tmp_path / name
    options = AnalysisOptions(project_root=str(tmp_path) if root else None)
    return [f.line for f in lint_options(path.read_text(encoding="utf-8"), str(path), options, codes=list(CODES))]


HELPERS = """
    def update(optimizer, loss):
        optimizer.zero_grad()
        loss.backward(retain_graph=True)
        optimizer.step()
"""


def test_helper_module_called_per_batch_from_the_training_script(tmp_path):
    _project(tmp_path, {
        "helpers.py": HELPERS,
        "train.py": """
            import torch.nn.functional as F
            from helpers import update

            for x, y in loader:
                update(opt, F.mse_loss(model(x), y))
        """,
    })
    assert _lint_file(tmp_path, "helpers.py") == [4]
    assert _lint_file(tmp_path, "helpers.py", root=False) == []  # callers unseen: silent


def test_helper_module_whose_caller_walks_the_graph_again(tmp_path):
    _project(tmp_path, {
        "helpers.py": HELPERS,
        "train.py": """
            from helpers import update

            for x, y in loader:
                out = model(x)
                update(opt, crit(out, y))
                update(opt_aux, aux(out).mean())
        """,
    })
    assert _lint_file(tmp_path, "helpers.py") == []


def test_helper_module_with_one_unreadable_use(tmp_path):
    _project(tmp_path, {
        "helpers.py": HELPERS,
        "train.py": """
            from helpers import update

            for x, y in loader:
                update(opt, crit(model(x), y))
        """,
        "pkg/hooks.py": """
            from helpers import update

            CALLBACKS = [update]
        """,
    })
    assert _lint_file(tmp_path, "helpers.py") == []


PIX2PIX_MODEL = """
    import torch

    class Pix2PixModel:
        def set_input(self, input):
            self.real_A = input["A"].to(self.device)
            self.real_B = input["B"].to(self.device)

        def forward(self):
            self.fake_B = self.netG(self.real_A)

        def backward_G(self):
            self.loss_G_L1 = self.criterionL1(self.fake_B, self.real_B) * self.opt.lambda_L1
            self.loss_G = self.criterionGAN(self.netD(torch.cat((self.real_A, self.fake_B), 1)), True) + self.loss_G_L1
            self.loss_G.backward(retain_graph=True)

        def optimize_parameters(self):
            self.forward()
            self.optimizer_G.zero_grad()
            self.backward_G()
            self.optimizer_G.step()
"""


def test_trainer_class_in_a_package_driven_by_the_training_script(tmp_path):
    _project(tmp_path, {
        "models/__init__.py": "",
        "models/pix2pix_model.py": PIX2PIX_MODEL,
        "train.py": """
            from models.pix2pix_model import Pix2PixModel

            model = Pix2PixModel()
            for epoch in range(10):
                for i, data in enumerate(dataset):
                    model.set_input(data)
                    model.optimize_parameters()
        """,
    })
    assert _lint_file(tmp_path, "models/pix2pix_model.py") == [15]
    assert _lint_file(tmp_path, "models/pix2pix_model.py", root=False) == []


def test_trainer_class_fed_a_generated_image_elsewhere(tmp_path):
    _project(tmp_path, {
        "models/pix2pix_model.py": PIX2PIX_MODEL,
        "train.py": """
            for data in dataset:
                model.set_input(data)
                model.optimize_parameters()
        """,
        "refine.py": """
            for data in dataset:
                model.set_input({"A": coarse_net(data["A"]), "B": data["B"]})
                model.optimize_parameters()
        """,
    })
    assert _lint_file(tmp_path, "models/pix2pix_model.py") == []


TRAINER = """
    class Trainer:
        def train_step(self, x, y):
            for _ in range(self.inner_steps):
                loss = self.criterion(self.model(x), y)
                self.optimizer.zero_grad()
                loss.backward(retain_graph=True)
                self.optimizer.step()
"""


def test_trainer_method_called_with_loader_batches_from_another_file(tmp_path):
    _project(tmp_path, {
        "trainer.py": TRAINER,
        "main.py": """
            from trainer import Trainer

            trainer = Trainer()
            for x, y in loader:
                trainer.train_step(x.cuda(), y.cuda())
        """,
    })
    assert _lint_file(tmp_path, "trainer.py") == [7]


def test_trainer_method_given_a_graph_by_one_caller(tmp_path):
    _project(tmp_path, {
        "trainer.py": TRAINER,
        "main.py": """
            for x, y in loader:
                trainer.train_step(x, y)
        """,
        "distill.py": """
            for x, y in loader:
                trainer.train_step(teacher(x), y)
        """,
    })
    assert _lint_file(tmp_path, "trainer.py") == []


def test_project_files_searched_for_callers_are_recorded(tmp_path):
    from gradlint.analysis import Context
    from gradlint.rules import gl002

    _project(tmp_path, {
        "helpers.py": HELPERS,
        "train.py": """
            from helpers import update

            for x, y in loader:
                update(opt, crit(model(x), y))
        """,
        "README.py": "# no callers here\n",
    })
    path = tmp_path / "helpers.py"
    ctx = Context(cst.parse_module(path.read_text()), str(path), AnalysisOptions(project_root=str(tmp_path)))
    assert [f.line for f in gl002.check(ctx)] == [4]
    consulted = ctx.consulted_files
    assert str(tmp_path / "train.py") in consulted and str(path) not in consulted


def test_helper_called_through_its_module_by_a_caller_that_walks_the_graph_again(tmp_path):
    _project(tmp_path, {
        "helpers.py": HELPERS,
        "train.py": """
            import helpers

            for x, y in loader:
                loss = crit(model(x), y)
                helpers.update(opt, loss)
                (0.1 * loss).backward()
        """,
    })
    assert _lint_file(tmp_path, "helpers.py") == []


def test_helper_imported_under_another_name(tmp_path):
    _project(tmp_path, {
        "helpers.py": HELPERS,
        "train.py": """
            from helpers import update as apply_update

            for x, y in loader:
                loss = crit(model(x), y)
                apply_update(opt, loss)
                loss.backward()
        """,
    })
    assert _lint_file(tmp_path, "helpers.py") == []


def test_helper_called_through_its_module_per_batch(tmp_path):
    _project(tmp_path, {
        "helpers.py": HELPERS,
        "train.py": """
            import helpers

            for x, y in loader:
                helpers.update(opt, crit(model(x), y))
        """,
    })
    assert _lint_file(tmp_path, "helpers.py") == [4]


BASE_MODEL = """
    import torch

    class BaseModel:
        def set_requires_grad(self, nets, requires_grad=False):
            for net in nets:
                for param in net.parameters():
                    param.requires_grad = requires_grad

        def backward_D(self):
            self.loss_D = self.criterionGAN(self.netD(self.fake_B), False)
            self.loss_D.backward()
"""

CHILD_MODEL = """
    from models.base_model import BaseModel

    class GANModel(BaseModel):
        def set_input(self, input):
            self.real_A, self.real_B = input

        def forward(self):
            self.fake_B = self.netG(self.real_A)

        def backward_G(self):
            self.loss_G = self.criterionGAN(self.netD(self.fake_B), True)
            self.loss_G.backward(retain_graph=True)

        def optimize_parameters(self):
            self.forward()
            self.set_requires_grad([self.netD], False)
            self.optimizer_G.zero_grad()
            self.backward_G()
            self.optimizer_G.step()
            self.set_requires_grad([self.netD], True)
            {LATER}
"""

TRAIN_LOOP = """
    for data in dataset:
        model.set_input(data)
        model.optimize_parameters()
"""


def test_inherited_helpers_that_run_no_backward(tmp_path):
    _project(tmp_path, {
        "models/__init__.py": "",
        "models/base_model.py": BASE_MODEL,
        "models/gan_model.py": CHILD_MODEL.replace("{LATER}", "self.optimizer_D.step()"),
        "train.py": TRAIN_LOOP,
    })
    assert _lint_file(tmp_path, "models/gan_model.py") == [13]


def test_inherited_method_walks_the_kept_fake(tmp_path):
    _project(tmp_path, {
        "models/__init__.py": "",
        "models/base_model.py": BASE_MODEL,
        "models/gan_model.py": CHILD_MODEL.replace("{LATER}", "self.backward_D()"),
        "train.py": TRAIN_LOOP,
    })
    assert _lint_file(tmp_path, "models/gan_model.py") == []


def test_inherited_method_of_a_base_we_cannot_read(tmp_path):
    _project(tmp_path, {
        "models/gan_model.py": CHILD_MODEL.replace("{LATER}", "self.optimizer_D.step()").replace(
            "from models.base_model import BaseModel", "from some_package.models import BaseModel"
        ),
        "train.py": TRAIN_LOOP,
    })
    assert _lint_file(tmp_path, "models/gan_model.py") == []


def test_lightning_hook_of_a_module_deriving_from_a_project_base(tmp_path):
    _project(tmp_path, {
        "mapping/__init__.py": "",
        "mapping/models.py": """
            import pytorch_lightning as pl

            class ModelInterface(pl.LightningModule):
                def as_dict(self):
                    return {"func": self.forward}
        """,
        "mapping/transition.py": """
            import torch
            from mapping.models import ModelInterface

            class TransitionModel(ModelInterface):
                def training_step(self, batch, batch_idx):
                    sa, s1 = batch
                    return torch.nn.functional.l1_loss(self.forward(sa), s1)

                def backward(self, loss, optimizer, optimizer_idx):
                    loss.backward(retain_graph=True)
        """,
    })
    assert _lint_file(tmp_path, "mapping/transition.py") == [11]


# Graphs that outlive the call: stores filled with values with history, and calls we cannot see into.

CLEAN_OUTLIVING = {
    "replay_buffer_attribute_keeps_encoder_outputs": """
        class Storage:
            def __init__(self):
                self.data = []

            def save(self, states, actions, rewards):
                self.data.append([states, actions, rewards])

            def optimize(self, qnet, opt):
                for states, actions, rewards in self.data:
                    loss = (qnet(states) - rewards).pow(2).mean()
                    opt.zero_grad()
                    loss.backward(retain_graph=True)
                    opt.step()
    """,
    "replay_buffer_element_read_by_index": """
        class Memory:
            def __init__(self):
                self.items = []

            def remember(self, encoder, x, r):
                self.items.append((encoder(x), r))

            def learn_last(self, qnet, opt):
                state, reward = self.items[-1]
                loss = (qnet(state) - reward).pow(2).mean()
                loss.backward(retain_graph=True)
                opt.step()
    """,
    "replay_buffer_sampled_through_a_method": """
        class Agent:
            def observe(self, encoder, obs, reward):
                self.memory.push(encoder(obs), reward)

            def learn(self, qnet, opt):
                states, rewards = self.memory.sample(32)
                loss = (qnet(states) - rewards).pow(2).mean()
                loss.backward(retain_graph=True)
                opt.step()
    """,
    "module_level_memory_filled_by_a_function": """
        memory = []

        def remember(encoder, x, r):
            memory.append((encoder(x), r))

        def replay(qnet, opt):
            for h, r in memory:
                loss = (qnet(h) - r).pow(2).mean()
                opt.zero_grad()
                loss.backward(retain_graph=True)
                opt.step()
    """,
    "cache_dict_filled_by_key": """
        cache = {}

        def encode(encoder, key, x):
            cache[key] = encoder(x)

        def train_on(key, head, y, opt):
            loss = (head(cache[key]) - y).pow(2).mean()
            loss.backward(retain_graph=True)
            opt.step()
    """,
    "library_hessian_vector_product_after_the_gradient": """
        from torch import autograd
        from cherry.algorithms import trpo

        def meta_step(policy, surrogate, replays):
            old_loss, old_kl = surrogate(policy, replays)
            grad = autograd.grad(old_loss, policy.parameters(), retain_graph=True)
            fvp = trpo.hessian_vector_product(old_kl, policy.parameters())
            print(trpo.conjugate_gradient(fvp, grad))
    """,
    "callable_built_from_the_graph_called_later": """
        import functools
        from torch import autograd

        def kl_hvp(kl, params, v):
            return autograd.grad(kl, params, grad_outputs=v)

        def meta_step(policy, surrogate, replays, v):
            loss, kl = surrogate(policy, replays)
            grad = autograd.grad(loss, policy.parameters(), retain_graph=True)
            hvp = functools.partial(kl_hvp, kl, list(policy.parameters()))
            print(hvp(v), grad)
    """,
    "lambda_capturing_the_graph": """
        from torch import autograd

        def conjugate_gradient(f, b):
            return f(b)

        def meta_step(policy, surrogate, replays):
            loss, kl = surrogate(policy, replays)
            grad = autograd.grad(loss, policy.parameters(), retain_graph=True)
            hvp = lambda v: autograd.grad(kl, policy.parameters(), grad_outputs=v)
            print(conjugate_gradient(hvp, grad))
    """,
    "lambda_passed_straight_to_a_library_solver": """
        from torch import autograd
        from mylib import solvers

        def meta_step(policy, surrogate, replays):
            loss, kl = surrogate(policy, replays)
            grad = autograd.grad(loss, policy.parameters(), retain_graph=True)
            print(solvers.cg(lambda v: solvers.hvp(kl, v), grad))
    """,
}

FLAGGED_OUTLIVING = {
    "replay_buffer_of_detached_values": """
        class Storage:
            def __init__(self):
                self.data = []

            def save(self, state, reward):
                self.data.append((state.detach(), float(reward)))

            def optimize(self, qnet, opt):
                for state, reward in self.data:
                    loss = (qnet(state) - reward).pow(2).mean()
                    opt.zero_grad()
                    loss.backward(retain_graph=True)  # GL002
                    opt.step()
    """,
    "parameter_list_built_in_the_constructor": """
        import torch
        from torch.nn import Parameter

        class Attack:
            def __init__(self, sizes):
                self.weights = []
                for n in sizes:
                    weight = Parameter(torch.zeros(n, n))
                    self.weights.append(weight)

            def meta_grad(self, x, target, changes):
                hidden = x
                for w in self.weights:
                    hidden = hidden @ w
                loss = (hidden - target).pow(2).mean()
                grad = torch.autograd.grad(loss, changes, retain_graph=True)[0]  # GL002
                return grad
    """,
    "loader_attribute_set_up_in_a_method": """
        from torch.utils.data import DataLoader

        class Trainer:
            def setup(self, dataset):
                self.loader = DataLoader(dataset, batch_size=8)

            def fit(self, model, opt):
                for x, y in self.loader:
                    loss = (model(x) - y).pow(2).mean()
                    loss.backward(retain_graph=True)  # GL002
                    opt.step()
    """,
    "data_package_and_detached_library_calls_after_the_backward": """
        import numpy as np
        from torchvision.utils import make_grid
        from mylib import metrics

        for x, y in loader:
            out = model(x)
            loss = (out - y).pow(2).mean()
            loss.backward(retain_graph=True)  # GL002
            opt.step()
            grid = make_grid(out)
            score = metrics.psnr(out.detach(), y)
            print(np.mean(out.detach().numpy()), score, grid.shape)
    """,
}


@pytest.mark.parametrize("name", sorted(CLEAN_OUTLIVING))
def test_clean_outliving(name):
    source = textwrap.dedent(CLEAN_OUTLIVING[name])
    assert [(f.line, f.code) for f in _lint(source)] == []


@pytest.mark.parametrize("name", sorted(FLAGGED_OUTLIVING))
def test_flagged_outliving(name):
    source = textwrap.dedent(FLAGGED_OUTLIVING[name])
    found = [(f.line, f.code) for f in _lint(source)]
    assert found == _marked(source)
    assert found


def test_project_function_that_runs_no_backward_is_seen_into(tmp_path):
    _project(tmp_path, {
        "utils.py": """
            def accuracy(output, labels):
                preds = output.max(1)[1].type_as(labels)
                return preds.eq(labels).double().sum() / len(labels)
        """,
        "hvp.py": """
            from torch import autograd

            def fvp(kl, params, v):
                return autograd.grad(kl, params, grad_outputs=v)
        """,
        "train.py": """
            import torch
            import utils
            from hvp import fvp

            def step(model, x, y, changes, v):
                output = model(x)
                loss = (output - y).pow(2).mean()
                grad = torch.autograd.grad(loss, changes, retain_graph=True)[0]
                print(utils.accuracy(output, y).item())
                return grad

            def meta(model, x, y, changes, v):
                output = model(x)
                loss = (output - y).pow(2).mean()
                grad = torch.autograd.grad(loss, changes, retain_graph=True)[0]
                print(fvp(loss, changes, v))
                return grad
        """,
    })
    assert _lint_file(tmp_path, "train.py") == [9]


# Values that look linked but hold no history: reduction indices, constructor settings, strings.

FLAGGED_PLAIN_VALUES = {
    "topk_indices_fed_back_into_the_next_pass": """
        import torch

        def train_batch(model, x, y, criterion, optimizer, passes):
            prev = None
            for i in range(passes):
                out = model(x, prev)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward(retain_graph=True)  # GL002
                optimizer.step()
                prev = torch.squeeze(torch.topk(out, 1, dim=2)[1])

        for x, y in loader:
            train_batch(model, x, y, criterion, optimizer, 3)
    """,
    "max_indices_and_sort_indices_fed_back": """
        def refine(model, x, y, criterion, optimizer, passes):
            tokens = None
            order = None
            for i in range(passes):
                out = model(x, tokens, order)
                loss = criterion(out, y)
                loss.backward(retain_graph=True)  # GL002
                optimizer.step()
                tokens = out.max(dim=-1)[1]
                order = out.sort(1).indices

        for x, y in loader:
            refine(model, x, y, criterion, optimizer, 3)
    """,
    "weights_set_only_in_the_constructor": """
        import torch.nn as nn

        class Trainer:
            def __init__(self, model, gama=0.8, device="cpu"):
                self.model = model
                self.gama = gama
                self.device = device
                self.criterion = nn.NLLLoss()

            def iteration(self, epoch, loader, opt):
                for i, (x, y, z) in enumerate(loader):
                    out, prob = self.model(x.to(self.device))
                    loss = self.gama * self.criterion(out, y) + (1 - self.gama) * (prob - z).abs().mean()
                    opt.zero_grad()
                    loss.backward(retain_graph=True)  # GL002
                    opt.step()
    """,
    "progress_bar_described_with_a_formatted_string": """
        import tqdm

        def iteration(model, epoch, loader, opt):
            bar = tqdm.tqdm(enumerate(loader), desc="EP_%d" % epoch, total=len(loader))
            for i, (x, y) in bar:
                loss = (model(x) - y).pow(2).mean()
                opt.zero_grad()
                loss.backward(retain_graph=True)  # GL002
                opt.step()
                bar.write("epoch %d loss %f" % (epoch, loss.item()))
    """,
}

FLAGGED_PLAIN_VALUES["targets_from_an_instance_whose_call_detaches"] = """
    import torch
    from models import Net

    class Grab:
        def __init__(self, model):
            self.model = model

        def __call__(self, x):
            with torch.no_grad():
                return self.model(x).detach()

    teacher, student = Net(), Net()
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    data = torch.randn(64, 4)
    grab = Grab(teacher)
    targets = grab(data)
    for i in range(100):
        loss = (student(data) - targets).pow(2).mean()
        opt.zero_grad()
        loss.backward(retain_graph=True)  # GL002
        opt.step()
"""

CLEAN_PLAIN_VALUES = {
    "targets_from_an_instance_whose_call_keeps_the_graph": """
        import torch
        from models import Net

        class Grab:
            def __init__(self, model):
                self.model = model

            def __call__(self, x):
                return self.model(x)

        teacher, student = Net(), Net()
        opt = torch.optim.SGD(student.parameters(), lr=0.1)
        data = torch.randn(64, 4)
        grab = Grab(teacher)
        targets = grab(data)
        for i in range(100):
            loss = (student(data) - targets).pow(2).mean()
            opt.zero_grad()
            loss.backward(retain_graph=True)
            opt.step()
    """,
    "topk_values_fed_back_keep_the_graph": """
        import torch

        def train_batch(model, x, y, criterion, optimizer, passes):
            prev = None
            for i in range(passes):
                out = model(x, prev)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward(retain_graph=True)
                optimizer.step()
                prev = torch.topk(out, 1, dim=2)[0]

        for x, y in loader:
            train_batch(model, x, y, criterion, optimizer, 3)
    """,
    "elementwise_max_row_fed_back_keeps_the_graph": """
        import torch

        def train_batch(model, x, y, criterion, optimizer, passes, floor):
            prev = None
            for i in range(passes):
                out = model(x, prev)
                loss = criterion(out, y)
                loss.backward(retain_graph=True)
                optimizer.step()
                prev = torch.max(out, floor)[1]

        for x, y in loader:
            train_batch(model, x, y, criterion, optimizer, 3, torch.zeros(1))
    """,
}


@pytest.mark.parametrize("name", sorted(FLAGGED_PLAIN_VALUES))
def test_flagged_plain_values(name):
    source = textwrap.dedent(FLAGGED_PLAIN_VALUES[name])
    found = [(f.line, f.code) for f in _lint(source)]
    assert found == _marked(source)
    assert found


@pytest.mark.parametrize("name", sorted(CLEAN_PLAIN_VALUES))
def test_clean_plain_values(name):
    source = textwrap.dedent(CLEAN_PLAIN_VALUES[name])
    assert [(f.line, f.code) for f in _lint(source)] == []


def test_project_function_returning_detached_data(tmp_path):
    _project(tmp_path, {
        "quant/__init__.py": "",
        "quant/data_utils.py": """
            import torch

            class GetInpOut:
                def __init__(self, model, layer):
                    self.model, self.layer = model, layer

                def __call__(self, batch):
                    with torch.no_grad():
                        out = self.model(batch)
                    return batch.detach(), out.detach()

            def save_inp_oup_data(model, layer, data, batch_size=32):
                get_inp_out = GetInpOut(model, layer)
                cached = []
                for i in range(data.size(0) // batch_size):
                    inp, out = get_inp_out(data[i * batch_size:(i + 1) * batch_size])
                    cached.append((inp.cpu(), out.cpu()))
                return torch.cat([x[0] for x in cached]), torch.cat([x[1] for x in cached])

            def live_features(model, layer, data):
                feats = layer(model(data))
                return feats, feats
        """,
        "quant/recon.py": """
            import torch
            from quant.data_utils import save_inp_oup_data, live_features

            def reconstruct(model, layer, data, iters, loss_func, optimizer):
                cached_inps, cached_outs = save_inp_oup_data(model, layer, data)
                for i in range(iters):
                    idx = torch.randperm(cached_inps.size(0))[:32]
                    err = loss_func(layer(cached_inps[idx]), cached_outs[idx])
                    optimizer.zero_grad()
                    err.backward(retain_graph=True)
                    optimizer.step()

            def reconstruct_live(model, layer, data, iters, loss_func, optimizer):
                inps, outs = live_features(model, layer, data)
                for i in range(iters):
                    err = loss_func(layer(inps), outs)
                    optimizer.zero_grad()
                    err.backward(retain_graph=True)
                    optimizer.step()
        """,
    })
    assert _lint_file(tmp_path, "quant/recon.py") == [11]
