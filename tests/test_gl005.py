"""GL005 gradients-cleared-before-step on realistic training code.

Each case is a whole script, function or class as people write them. A line that must be reported
ends with the marker `# GL005`; every other line must not be. The tests compare the exact
(code, line) pairs.
"""

from __future__ import annotations

import textwrap
from typing import Optional

import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options

MARK = "# GL005"


def findings(source: str, options: Optional[AnalysisOptions] = None, path: str = "train.py"):
    return lint_options(textwrap.dedent(source), path, options, codes=["GL005"])


def expected(source: str):
    return [
        ("GL005", n) for n, line in enumerate(textwrap.dedent(source).splitlines(), 1) if line.rstrip().endswith(MARK)
    ]


def reported(source: str, options: Optional[AnalysisOptions] = None, path: str = "train.py"):
    return [(f.code, f.line) for f in findings(source, options, path)]


FLAGGED = {
    "epoch_helper_with_its_own_loop_reported_once_on_its_clear": """
        import torch
        from torch import nn

        def train_one_epoch(model, loader, optimizer, criterion):
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.zero_grad()  # GL005
                optimizer.step()

        model = nn.Linear(4, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(3):
            train_one_epoch(model, loader, opt, nn.CrossEntropyLoss())
        """,
    "step_helper_without_a_loop_reported_on_its_call": """
        import torch

        def train_step(model, batch, optimizer):
            loss = model(batch).mean()
            loss.backward()
            optimizer.zero_grad()
            optimizer.step()

        for epoch in range(3):
            for batch in loader:
                train_step(model, batch, opt)  # GL005
        """,
    "zero_grad_between_backward_and_step": """
        import torch

        model = torch.nn.Linear(10, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for epoch in range(100):
            for x, y in loader:
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                optimizer.zero_grad()  # GL005
                optimizer.step()
        """,
    "model_zero_grad_before_step_in_function": """
        def train_epoch(model, loader, optimizer, criterion, device):
            model.train()
            running = 0.0
            for inputs, labels in loader:
                inputs, labels = inputs.to(device), labels.to(device)
                outputs = model(inputs)
                loss = criterion(outputs, labels)
                loss.backward()
                model.zero_grad()  # GL005
                optimizer.step()
                running += loss.item()
            return running / len(loader)
        """,
    "unconditional_zero_grad_before_accumulation_gate": """
        import torch

        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
        for step, batch in enumerate(train_dataloader):
            outputs = model(**batch)
            loss = outputs.loss / args.gradient_accumulation_steps
            loss.backward()
            optimizer.zero_grad()  # GL005
            if (step + 1) % args.gradient_accumulation_steps == 0:
                optimizer.step()
                lr_scheduler.step()
        """,
    "zero_grad_at_top_with_accumulation_gated_step": """
        import torch

        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        for i, (images, labels) in enumerate(loader):
            optimizer.zero_grad()  # GL005
            loss = criterion(model(images), labels) / accum_iter
            loss.backward()
            if (i + 1) % accum_iter == 0:
                optimizer.step()
        """,
    "zero_grad_after_gated_step_outside_gate": """
        import torch

        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for batch_idx, (data, target) in enumerate(train_loader):
            output = net(data)
            loss = F.cross_entropy(output, target) / accumulation_steps
            loss.backward()
            if (batch_idx + 1) % accumulation_steps == 0:
                optimizer.step()
            optimizer.zero_grad()  # GL005
        """,
    "grad_none_loop_before_step": """
        import torch

        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            for p in model.parameters():
                p.grad = None  # GL005
            optimizer.step()
        """,
    "amp_zero_grad_between_scaled_backward_and_scaler_step": """
        import torch

        scaler = torch.cuda.amp.GradScaler()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
        for x, y in loader:
            with torch.autocast("cuda", dtype=torch.float16):
                loss = model(x, y)
            scaler.scale(loss).backward()
            optimizer.zero_grad(set_to_none=True)  # GL005
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        """,
    "trainer_class_clear_before_step": """
        import torch

        class Trainer:
            def __init__(self, model, lr):
                self.model = model
                self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)

            def train(self, loader, epochs):
                for epoch in range(epochs):
                    for batch in loader:
                        loss = self.model(batch).mean()
                        loss.backward()
                        self.optimizer.zero_grad()  # GL005
                        self.optimizer.step()
        """,
    "clearing_helper_called_before_step": """
        import torch

        def reset_gradients(model):
            for param in model.parameters():
                if param.grad is not None:
                    param.grad.detach_()
                    param.grad.zero_()

        def fit(model, loader, optimizer):
            for x, y in loader:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                reset_gradients(model)  # GL005
                optimizer.step()
        """,
    "train_step_helper_clears_then_gated_step": """
        import torch

        class Runner:
            def __init__(self, model, accum):
                self.model = model
                self.accum = accum
                self.optimizer = torch.optim.AdamW(model.parameters())

            def train_step(self, batch):
                self.optimizer.zero_grad()
                loss = self.model(**batch).loss / self.accum
                loss.backward()
                return loss.item()

            def run(self, loader):
                for i, batch in enumerate(loader):
                    self.train_step(batch)  # GL005
                    if (i + 1) % self.accum == 0:
                        self.optimizer.step()
        """,
    "optimizer_step_helper_clears_first": """
        import torch

        class Learner:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

            def optimizer_step(self):
                self.optimizer.zero_grad()
                self.optimizer.step()

            def fit(self, loader):
                for batch in loader:
                    loss = self.model(batch).mean()
                    loss.backward()
                    self.optimizer_step()  # GL005
        """,
    "gan_generator_clear_after_its_backward": """
        import torch

        optimizer_G = torch.optim.Adam(generator.parameters(), lr=2e-4)
        optimizer_D = torch.optim.Adam(discriminator.parameters(), lr=2e-4)
        for imgs, _ in dataloader:
            optimizer_D.zero_grad()
            real_loss = adversarial_loss(discriminator(imgs), valid)
            fake_loss = adversarial_loss(discriminator(gen_imgs.detach()), fake)
            d_loss = (real_loss + fake_loss) / 2
            d_loss.backward()
            optimizer_D.step()
            gen_imgs = generator(z)
            g_loss = adversarial_loss(discriminator(gen_imgs), valid)
            g_loss.backward()
            optimizer_G.zero_grad()  # GL005
            optimizer_G.step()
        """,
    "lightning_manual_clear_before_step": """
        import lightning as L
        import torch

        class Model(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False
                self.net = torch.nn.Linear(8, 1)

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                loss = self.net(batch).pow(2).mean()
                self.manual_backward(loss)
                opt.zero_grad()  # GL005
                opt.step()
                return loss

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters())
        """,
    "accelerate_clear_between_backward_and_step": """
        from accelerate import Accelerator

        accelerator = Accelerator()
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        for epoch in range(num_epochs):
            for batch in loader:
                outputs = model(**batch)
                accelerator.backward(outputs.loss)
                optimizer.zero_grad()  # GL005
                optimizer.step()
                lr_scheduler.step()
        """,
    "rl_actor_critic_clear_before_actor_step": """
        import torch

        actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
        critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
        for episode in range(num_episodes):
            states, actions, returns = run_episode(env, actor)
            critic_loss = (critic(states).squeeze() - returns).pow(2).mean()
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            advantage = (returns - critic(states).squeeze()).detach()
            actor_loss = -(actor.log_prob(states, actions) * advantage).mean()
            actor_loss.backward()
            actor_opt.zero_grad()  # GL005
            actor_opt.step()
        """,
    "grad_set_to_none_per_parameter_list": """
        import torch

        params = [w, b]
        optimizer = torch.optim.SGD(params, lr=0.05)
        for x, y in batches:
            pred = x @ w + b
            loss = ((pred - y) ** 2).mean()
            loss.backward()
            for p in params:
                p.grad.zero_()  # GL005
            optimizer.step()
        """,
    "while_loop_clear_before_step_with_logging_after": """
        import torch

        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
        step = 0
        while step < max_steps:
            batch = next(data_iter)
            loss = model.compute_loss(batch)
            loss.backward()
            optimizer.zero_grad()  # GL005
            optimizer.step()
            step += 1
            if step % 100 == 0:
                print(step, loss.item())
        """,
    "same_modulo_gate_on_the_clear_before_and_the_step_after_the_backward": """
        import torch

        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        accum_steps = 4
        for i, (x, y) in enumerate(loader):
            if i % accum_steps == 0:
                optimizer.zero_grad()  # GL005
            loss = criterion(model(x), y) / accum_steps
            loss.backward()
            if i % accum_steps == 0:
                optimizer.step()
        """,
    "same_gate_in_a_trainer_method_on_self_counters": """
        class Trainer:
            def train_epoch(self, loader):
                for batch in loader:
                    if (self.global_step + 1) % self.accumulate == 0:
                        self.model.zero_grad()  # GL005
                    loss = self.model(batch).loss / self.accumulate
                    loss.backward()
                    if (self.global_step + 1) % self.accumulate == 0:
                        self.optimizer.step()
                        self.scheduler.step()
                    print(loss.item())
                self.global_step += 1
        """,
    "per_parameter_clear_over_the_stepped_model": """
        import torch

        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            for name, p in model.named_parameters():
                p.grad = None  # GL005
            optimizer.step()
        """,
    "epoch_clear_with_accumulation_gate_that_leaves_the_last_micro_batches": """
        import torch

        def train(model, optimizer, loader, epochs, accum_steps):
            for epoch in range(epochs):
                optimizer.zero_grad()  # GL005
                for step, (images, labels) in enumerate(loader):
                    loss = torch.nn.functional.cross_entropy(model(images), labels) / accum_steps
                    loss.backward()
                    if (step + 1) % accum_steps == 0:
                        optimizer.step()
                        optimizer.zero_grad()
        """,
    "epoch_clear_with_a_last_batch_test_on_another_loader": """
        import torch

        def train(model, optimizer, train_loader, val_loader, epochs, accum_steps):
            for epoch in range(epochs):
                optimizer.zero_grad()  # GL005
                for step, batch in enumerate(train_loader):
                    loss = model(**batch).loss / accum_steps
                    loss.backward()
                    if (step + 1) % accum_steps == 0 or step + 1 == len(val_loader):
                        optimizer.step()
                        optimizer.zero_grad()
        """,
    "epoch_clear_with_a_last_batch_test_that_is_off_by_one": """
        import torch

        def train(model, optimizer, loader, epochs, accum_steps):
            for epoch in range(epochs):
                optimizer.zero_grad()  # GL005
                for step, batch in enumerate(loader):
                    loss = model(**batch).loss / accum_steps
                    loss.backward()
                    if (step + 1) % accum_steps == 0 or step == len(loader):
                        optimizer.step()
                        optimizer.zero_grad()
        """,
    "micro_batch_clear_with_a_gate_that_flushes_the_last_batch": """
        import torch

        def train(model, optimizer, loader, epochs, accum_steps):
            for epoch in range(epochs):
                for step, batch in enumerate(loader):
                    optimizer.zero_grad()  # GL005
                    loss = model(**batch).loss / accum_steps
                    loss.backward()
                    if (step + 1) % accum_steps == 0 or step + 1 == len(loader):
                        optimizer.step()
        """,
    "context_manager_clears_after_its_yield_before_the_step": """
        import contextlib

        import torch

        @contextlib.contextmanager
        def optimizer_step(optimizer):
            yield
            optimizer.zero_grad()
            optimizer.step()

        def train(model, optimizer, loader):
            for inputs, targets in loader:
                with optimizer_step(optimizer):  # GL005
                    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                    loss.backward()
        """,
    "clear_in_the_with_body_before_the_context_managers_step": """
        from contextlib import contextmanager

        import torch

        @contextmanager
        def stepping(optimizer):
            yield
            optimizer.step()

        def train(model, optimizer, loader):
            for inputs, targets in loader:
                with stepping(optimizer):
                    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                    loss.backward()
                    optimizer.zero_grad()  # GL005
        """,
}


CLEAN = {
    "epoch_clear_with_a_gate_that_also_steps_on_the_last_batch": """
        import torch

        model = torch.nn.Linear(16, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(num_epochs):
            optimizer.zero_grad()
            for i, (x, y) in enumerate(train_loader):
                loss = torch.nn.functional.cross_entropy(model(x), y) / accumulation_steps
                loss.backward()
                if (i + 1) % accumulation_steps == 0 or i + 1 == len(train_loader):
                    optimizer.step()
                    optimizer.zero_grad()
        """,
    "trainer_epoch_clear_with_a_last_batch_test_on_num_batches": """
        import torch

        class Trainer:
            def fit(self, epochs):
                num_batches = len(self.train_loader)
                for epoch in range(epochs):
                    self.optimizer.zero_grad()
                    for step, batch in enumerate(self.train_loader):
                        with torch.autocast("cuda", dtype=torch.bfloat16):
                            loss = self.model(**batch).loss / self.grad_accum
                        loss.backward()
                        if (step + 1) % self.grad_accum == 0 or step == num_batches - 1:
                            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                            self.optimizer.step()
                            self.scheduler.step()
                            self.optimizer.zero_grad()
        """,
    "epoch_clear_with_a_step_flag_that_flushes_the_last_batch": """
        import torch

        def train(model, optimizer, loader, epochs, accum):
            for epoch in range(epochs):
                optimizer.zero_grad()
                for it, batch in enumerate(loader, start=1):
                    loss = model(**batch).loss / accum
                    loss.backward()
                    do_step = it % accum == 0 or it == len(loader)
                    if do_step:
                        optimizer.step()
                        optimizer.zero_grad()
        """,
    "context_manager_clears_before_its_yield_and_steps_after": """
        import contextlib

        import torch

        @contextlib.contextmanager
        def optimizer_step(optimizer):
            optimizer.zero_grad()
            yield
            optimizer.step()

        model = torch.nn.Linear(8, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for batch in loader:
            with optimizer_step(opt):
                loss = model(batch).pow(2).mean()
                loss.backward()
        """,
    "context_manager_steps_in_finally_and_the_body_may_continue": """
        from contextlib import contextmanager

        import torch

        @contextmanager
        def training_step(optimizer, scheduler=None):
            optimizer.zero_grad(set_to_none=True)
            try:
                yield
            finally:
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()

        def train(model, optimizer, loader):
            for inputs, targets in loader:
                with training_step(optimizer):
                    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                    if not torch.isfinite(loss):
                        continue
                    loss.backward()
        """,
    "context_manager_steps_and_clears_after_its_yield": """
        import contextlib

        @contextlib.contextmanager
        def optimizer_step(optimizer):
            yield
            optimizer.step()
            optimizer.zero_grad()

        def train(model, optimizer, loader, criterion):
            for x, y in loader:
                with optimizer_step(optimizer):
                    criterion(model(x), y).backward()
        """,
    "generator_advanced_by_next_around_the_backward": """
        import torch

        def clear_then_step(optimizer):
            optimizer.zero_grad()
            yield
            optimizer.step()

        def train(model, optimizer, loader):
            for inputs, targets in loader:
                steps = clear_then_step(optimizer)
                next(steps)
                loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                loss.backward()
                next(steps, None)
        """,
    "class_context_manager_clears_on_enter_and_steps_on_exit": """
        import torch

        class OptimizerStep:
            def __init__(self, optimizer):
                self.optimizer = optimizer

            def __enter__(self):
                self.optimizer.zero_grad()
                return self

            def __exit__(self, *exc):
                self.optimizer.step()
                return False

        def train(model, optimizer, loader):
            for x, y in loader:
                with OptimizerStep(optimizer):
                    torch.nn.functional.mse_loss(model(x), y).backward()
        """,
    "clear_only_on_logging_iterations_is_not_every_path": """
        for i, batch in enumerate(loader):
            loss = model(batch)
            loss.backward()
            if i % 100 == 0:
                log_grad_norm(model)
                optimizer.zero_grad()
            optimizer.step()
            optimizer.zero_grad()
        """,
    "zero_grad_right_after_step": """
        import torch

        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        """,
    "zero_grad_before_backward": """
        def train(model, loader, optimizer):
            for x, y in loader:
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
        """,
    "dcgan": """
        import torch

        optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        for epoch in range(num_epochs):
            for i, data in enumerate(dataloader, 0):
                netD.zero_grad()
                output = netD(data[0]).view(-1)
                errD_real = criterion(output, label)
                errD_real.backward()
                fake = netG(noise)
                output = netD(fake.detach()).view(-1)
                errD_fake = criterion(output, label.fill_(fake_label))
                errD_fake.backward()
                optimizerD.step()
                netG.zero_grad()
                output = netD(fake).view(-1)
                errG = criterion(output, label.fill_(real_label))
                errG.backward()
                optimizerG.step()
        """,
    "gan_d_backward_d_step_then_g_clear_model_level": """
        for real in loader:
            d_loss = d_criterion(D(real), D(G(z).detach()))
            d_loss.backward()
            opt_d.step()
            G.zero_grad()
            D.zero_grad()
            g_loss = g_criterion(D(G(z)))
            g_loss.backward()
            opt_g.step()
        """,
    "probe_reads_grad_before_clearing": """
        import torch

        optimizer = torch.optim.Adam(model.parameters())
        for x, y in loader:
            aux_loss = aux_criterion(model(x), y)
            aux_loss.backward()
            aux_norms = [p.grad.norm().item() for p in model.parameters() if p.grad is not None]
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            log(aux_norms)
        """,
    "gradient_logging_helper_before_clear": """
        import torch

        def grad_histograms(model, writer, step):
            for name, p in model.named_parameters():
                if p.grad is not None:
                    writer.add_histogram(name, p.grad, step)

        for step, (x, y) in enumerate(loader):
            probe = probe_loss(model(x), y)
            probe.backward()
            grad_histograms(model, writer, step)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        """,
    "saliency_without_step": """
        import torch

        model.eval()
        for images, labels in loader:
            images.requires_grad_(True)
            scores = model(images)
            scores.gather(1, labels.view(-1, 1)).sum().backward()
            saliency = images.grad.abs().max(dim=1)[0]
            model.zero_grad()
            maps.append(saliency)
        """,
    "fisher_information_without_step": """
        fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        for x, y in loader:
            model.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            model.zero_grad()
        """,
    "accumulation_with_gated_clear": """
        import torch

        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for i, batch in enumerate(loader):
            loss = model(**batch).loss / accum_steps
            loss.backward()
            if (i + 1) % accum_steps == 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad()
        """,
    "accumulation_clear_gate_at_top": """
        import torch

        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for i, (x, y) in enumerate(loader):
            if i % accum == 0:
                optimizer.zero_grad()
            loss = criterion(model(x), y) / accum
            loss.backward()
            if (i + 1) % accum == 0:
                optimizer.step()
        """,
    "accelerate_accumulate_zero_grad_at_top": """
        from accelerate import Accelerator

        accelerator = Accelerator(gradient_accumulation_steps=8)
        model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
        for batch in dataloader:
            with accelerator.accumulate(model):
                optimizer.zero_grad()
                outputs = model(**batch)
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
        """,
    "skip_non_finite_loss": """
        import torch

        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            if not torch.isfinite(loss):
                optimizer.zero_grad()
                continue
            optimizer.step()
            optimizer.zero_grad()
        """,
    "clear_of_another_optimizer": """
        import torch

        enc_opt = torch.optim.Adam(encoder.parameters())
        dec_opt = torch.optim.Adam(decoder.parameters())
        for src, tgt in loader:
            loss = criterion(decoder(encoder(src)), tgt)
            loss.backward()
            enc_opt.zero_grad()
            dec_opt.step()
            recon = recon_loss(encoder(src), src)
            recon.backward()
            enc_opt.step()
        """,
    "lbfgs_closure": """
        import torch

        optimizer = torch.optim.LBFGS(model.parameters(), lr=1)
        for i in range(20):
            def closure():
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                return loss
            loss = closure()
            optimizer.step(closure)
        """,
    "deepspeed_engine": """
        import deepspeed

        engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg)
        for batch in loader:
            loss = engine(batch)
            engine.backward(loss)
            engine.zero_grad()
            engine.step()
        """,
    "ema_model_zero_grad_before_step": """
        import torch

        optimizer = torch.optim.AdamW(params, lr=1e-4)
        for batch in loader:
            loss = diffusion_loss(model, batch)
            loss.backward()
            ema_model.zero_grad()
            optimizer.step()
            optimizer.zero_grad()
            ema.update()
        """,
    "adversarial_training_reads_input_grad": """
        import torch

        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:
            x.requires_grad_(True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            x_adv = (x + eps * x.grad.sign()).detach()
            optimizer.zero_grad()
            adv_loss = F.cross_entropy(model(x_adv), y)
            adv_loss.backward()
            optimizer.step()
        """,
    "single_tensor_grad_zero_of_attack_variable": """
        for j in range(train_iters):
            output = surrogate(features, adj + delta)
            loss = F.nll_loss(output[idx], labels[idx])
            optimizer.zero_grad()
            loss.backward(retain_graph=True)
            self.delta.grad.zero_()
            optimizer.step()
        """,
    "per_sample_probe_then_real_step_in_inner_loop": """
        import torch

        for x, y in loader:
            for xi, yi in zip(x, y):
                model.zero_grad()
                criterion(model(xi[None]), yi[None]).backward()
                stats.update(torch.cat([p.grad.flatten() for p in model.parameters()]))
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
        """,
    "clear_gated_on_the_first_micro_batch_step_gated_on_the_last": """
        for i, (x, y) in enumerate(loader):
            if i % accum_steps == 0:
                optimizer.zero_grad()
            loss = criterion(model(x), y) / accum_steps
            loss.backward()
            if (i + 1) % accum_steps == 0:
                optimizer.step()
        """,
    "same_gate_with_the_counter_moved_between_the_tests": """
        step = 0
        while step < max_steps:
            if step % accum_steps == 0:
                optimizer.zero_grad()
            loss = model(next(batches)).loss / accum_steps
            loss.backward()
            step += 1
            if step % accum_steps == 0:
                optimizer.step()
        """,
    "same_gate_clear_right_after_the_step": """
        for i, (x, y) in enumerate(loader):
            loss = criterion(model(x), y) / accum_steps
            loss.backward()
            if (i + 1) % accum_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
            if (i + 1) % accum_steps == 0:
                scheduler.step()
        """,
    "same_gate_step_and_clear_together_before_the_backward": """
        for i, (x, y) in enumerate(loader):
            if i % accum_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
            loss = criterion(model(x), y) / accum_steps
            loss.backward()
            if i % accum_steps == 0:
                log(loss.item())
        """,
    "same_gate_with_grad_norm_read_before_the_step": """
        for i, (x, y) in enumerate(loader):
            if i % log_every == 0:
                optimizer.zero_grad()
                probe_loss(model).backward()
                norms.append(sum(p.grad.norm() for p in model.parameters()))
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            if i % log_every == 0:
                optimizer.step()
        """,
    "per_parameter_clear_of_a_frozen_backbone_before_the_step": """
        import torch

        opt = torch.optim.SGD(list(backbone.parameters()) + list(head.parameters()), lr=0.05)
        for epoch in range(epochs):
            for x, y in loader:
                loss = criterion(head(backbone(x)), y)
                opt.zero_grad()
                loss.backward()
                if epoch < freeze_epochs:
                    for p in backbone.parameters():
                        p.grad = None
                for p in backbone[0].parameters():
                    p.grad = None
                opt.step()
        """,
    "per_parameter_clear_of_the_discriminator_before_the_generator_step": """
        import torch

        opt_g = torch.optim.Adam(G.parameters(), lr=2e-4)
        opt_d = torch.optim.Adam(D.parameters(), lr=2e-4)
        for real in loader:
            fake = G(torch.randn(16, 4))
            d_loss = D(fake.detach()).mean() - D(real).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = -D(fake).mean()
            opt_g.zero_grad()
            g_loss.backward()
            for p in D.parameters():
                p.grad = None
            opt_g.step()
        """,
}


# An epoch-start clear, then accumulation over `loader`: the clear wipes what the last micro-batches
# of the epoch before left, unless the gate also steps on the loop's last iteration.
EPOCH_CLEAR = """
    import torch

    def train(model, optimizer, loader, epochs, accum):
        num_batches = len(loader)
        for epoch in range(epochs):
            optimizer.zero_grad(){mark}
            for {loop}:
                loss = torch.nn.functional.mse_loss(model(x), y) / accum
                loss.backward()
                if {gate}:
                    optimizer.step()
                    optimizer.zero_grad()
    """
ENUMERATE = "i, (x, y) in enumerate(loader)"
FLUSHING_GATES = [
    (ENUMERATE, "(i + 1) % accum == 0 or i + 1 == len(loader)"),
    (ENUMERATE, "(i + 1) % accum == 0 or (i + 1) == len(loader)"),
    (ENUMERATE, "((i + 1) % accum == 0) or (i == len(loader) - 1)"),
    (ENUMERATE, "(i + 1) % accum == 0 or len(loader) == i + 1"),
    (ENUMERATE, "(i + 1) % accum == 0 or i + 1 >= len(loader)"),
    (ENUMERATE, "(i + 1) % accum == 0 or i + 1 == num_batches"),
    ("i, (x, y) in enumerate(loader, 1)", "i % accum == 0 or i == len(loader)"),
    ("i in range(len(loader))", "(i + 1) % accum == 0 or i == num_batches - 1"),
]
LEAVING_GATES = [
    (ENUMERATE, "(i + 1) % accum == 0"),
    (ENUMERATE, "(i + 1) % accum == 0 and i + 1 == len(loader)"),
    (ENUMERATE, "(i + 1) % accum == 0 or i == len(loader)"),
    (ENUMERATE, "(i + 1) % accum == 0 or i + 2 == len(loader)"),
    (ENUMERATE, "(i + 1) % accum == 0 or i + 1 == len(val_loader)"),
    ("i, (x, y) in enumerate(loader, 1)", "i % accum == 0 or i + 1 == len(loader)"),
    ("i in range(len(loader) - 1)", "(i + 1) % accum == 0 or i + 1 == len(loader)"),
]


@pytest.mark.parametrize("loop, gate", FLUSHING_GATES)
def test_epoch_clear_with_a_gate_that_flushes_the_last_micro_batch(loop, gate):
    assert reported(EPOCH_CLEAR.format(mark="", loop=loop, gate=gate)) == []


@pytest.mark.parametrize("loop, gate", LEAVING_GATES)
def test_epoch_clear_with_a_gate_that_leaves_the_last_micro_batches(loop, gate):
    source = EPOCH_CLEAR.format(mark="  " + MARK, loop=loop, gate=gate)
    assert reported(source) == expected(source)


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(name):
    source = FLAGGED[name]
    assert expected(source), "a flagged case needs a marker"
    assert reported(source) == expected(source)


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean(name):
    assert reported(CLEAN[name]) == []


def test_there_are_enough_cases():
    assert len(FLAGGED) >= 15 and len(CLEAN) >= 15


def test_message_names_backward_and_step():
    message = findings(FLAGGED["zero_grad_between_backward_and_step"])[0].message
    assert "`loss.backward()` (line 9)" in message and "`optimizer.step()` (line 11)" in message
    assert "sees none" in message
    accumulated = findings(FLAGGED["zero_grad_at_top_with_accumulation_gated_step"])[0].message
    assert "only the last" in accumulated


def test_no_fix_is_offered():
    assert all(f.fix is None for name in FLAGGED for f in findings(FLAGGED[name]))


def test_configured_clear_helper():
    source = """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            wipe(model)
            optimizer.step()
        """
    assert reported(source) == []  # an unknown call: it may read or step
    options = AnalysisOptions(clear_functions=("wipe",))
    assert reported(source, options) == [("GL005", 5)]
