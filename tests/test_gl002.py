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
}

CLEAN = {
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
