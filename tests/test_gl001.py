"""GL001 missing-zero-grad on realistic training code.

Each case is a whole script or function as people write them. A line that must be reported ends with
the marker `# GL001`; every other line must not be. The tests compare the exact (code, line) pairs.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Optional

import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options

MARK = "# GL001"


def findings(source: str, options: Optional[AnalysisOptions] = None, path: str = "train.py"):
    return lint_options(textwrap.dedent(source), path, options, codes=["GL001"])


def expected(source: str):
    return [
        ("GL001", n) for n, line in enumerate(textwrap.dedent(source).splitlines(), 1) if line.rstrip().endswith(MARK)
    ]


def reported(source: str, options: Optional[AnalysisOptions] = None, path: str = "train.py"):
    return [(f.code, f.line) for f in findings(source, options, path)]


FLAGGED = {
    "vanilla_loop": """
        import torch
        from torch import nn

        model = nn.Linear(10, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        criterion = nn.MSELoss()
        for epoch in range(10):
            for x, y in loader:
                out = model(x)
                loss = criterion(out, y)
                loss.backward()  # GL001
                optimizer.step()
        """,
    "function_with_optimizer_param": """
        def train_one_epoch(model, loader, optimizer, device):
            model.train()
            total = 0.0
            for batch in loader:
                inputs, labels = batch[0].to(device), batch[1].to(device)
                logits = model(inputs)
                loss = F.cross_entropy(logits, labels)
                loss.backward()  # GL001
                optimizer.step()
                total += loss.item()
            return total / len(loader)
        """,
    "amp_grad_scaler_clear_only_first_step": """
        import torch

        scaler = torch.cuda.amp.GradScaler()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
        for step, (x, y) in enumerate(train_loader):
            if step == 0:
                opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = model(x, labels=y).loss
            scaler.scale(loss).backward()  # GL001
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
        """,
    "accelerate_without_clear": """
        from accelerate import Accelerator
        import torch

        accelerator = Accelerator()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
        for batch in dataloader:
            outputs = model(**batch)
            accelerator.backward(outputs.loss)  # GL001
            optimizer.step()
            lr_scheduler.step()
        """,
    "gan_generator_never_cleared": """
        import torch

        opt_d = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_g = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        for i, (real, _) in enumerate(dataloader):
            netD.zero_grad()
            fake = netG(torch.randn(real.size(0), nz, 1, 1))
            err_d = criterion(netD(real), ones) + criterion(netD(fake.detach()), zeros)
            err_d.backward()
            opt_d.step()

            err_g = criterion(netD(fake), ones)
            err_g.backward()  # GL001
            opt_g.step()
        """,
    "actor_critic_critic_not_cleared": """
        import torch

        actor_opt = torch.optim.Adam(actor.parameters(), lr=1e-4)
        critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
        for episode in range(1000):
            state = env.reset()
            done = False
            while not done:
                action, log_prob = actor.act(state)
                next_state, reward, done, _ = env.step(action)
                value = critic(state)
                target = reward + gamma * critic(next_state).detach() * (1 - done)
                critic_loss = (target - value).pow(2).mean()
                critic_loss.backward()  # GL001
                critic_opt.step()

                actor_opt.zero_grad()
                advantage = (target - value).detach()
                actor_loss = -(log_prob * advantage).mean()
                actor_loss.backward()
                actor_opt.step()
                state = next_state
        """,
    "two_optimizers_one_forgotten": """
        enc_optimizer = torch.optim.SGD(encoder.parameters(), lr=0.1)
        dec_optimizer = torch.optim.SGD(decoder.parameters(), lr=0.1)
        for src, tgt in pairs:
            enc_optimizer.zero_grad()
            hidden = encoder(src)
            loss = decoder_loss(decoder, hidden, tgt)
            loss.backward()  # GL001
            dec_optimizer.step()
            enc_optimizer.step()
        """,
    "zero_grad_in_wrong_branch": """
        for i, (x, y) in enumerate(loader):
            if i % log_every == 0:
                print(i)
                optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()  # GL001
            optimizer.step()
        """,
    "method_with_self_optimizer": """
        import torch

        class Trainer:
            def __init__(self, model, lr):
                self.model = model
                self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
                self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=10)

            def fit(self, loader, epochs):
                for epoch in range(epochs):
                    for x, y in loader:
                        loss = self.model.loss(x, y)
                        loss.backward()  # GL001
                        self.optimizer.step()
                    self.scheduler.step()
        """,
    "helper_runs_backward": """
        def compute_and_backprop(model, batch):
            loss = model(batch).mean()
            loss.backward()
            return loss.item()

        for batch in loader:
            value = compute_and_backprop(model, batch)  # GL001
            optimizer.step()
        """,
    "helper_steps_without_clearing": """
        import torch

        optim = torch.optim.RMSprop(policy.parameters(), lr=7e-4)

        def apply_update():
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            optim.step()

        for rollout in rollouts:
            loss = policy.loss(rollout)
            loss.backward()  # GL001
            apply_update()
        """,
    "continue_skips_clear": """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()  # GL001
            optimizer.step()
            if not torch.isfinite(loss):
                continue
            optimizer.zero_grad()
        """,
    "clear_in_try_only_on_exception": """
        for batch in loader:
            try:
                loss = model(batch)
            except RuntimeError:
                optimizer.zero_grad()
                continue
            loss.backward()  # GL001
            optimizer.step()
        """,
    "while_true_with_break": """
        step = 0
        while True:
            x, y = next(it)
            loss = F.nll_loss(net(x), y)
            loss.backward()  # GL001
            opt.step()
            step += 1
            if step >= max_steps:
                break
        """,
    "lbfgs_closure_without_zero_grad": """
        import torch

        optimizer = torch.optim.LBFGS(model.parameters(), lr=1)

        def closure():
            loss = criterion(model(inputs), targets)
            loss.backward()
            return loss

        for i in range(20):
            optimizer.step(closure)  # GL001
        """,
    "imported_optimizer_class": """
        from torch.optim import Adam

        net_opt = Adam(net.parameters())
        for data in loader:
            l = net(data).sum()
            l.backward()  # GL001
            net_opt.step()
        """,
    "two_backward_step_pairs_one_clear": """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            loss2 = criterion(model(x), y)
            loss2.backward()  # GL001
            optimizer.step()
            optimizer.zero_grad()
        """,
    "clear_only_every_k_but_step_every_iteration": """
        for i, batch in enumerate(loader):
            if (i + 1) % accum == 0:
                optimizer.zero_grad()
            loss = model(batch).loss / accum
            loss.backward()  # GL001
            optimizer.step()
        """,
    "multiline_backward_call": """
        for x in loader:
            out = model(x)
            torch.autograd.backward(  # GL001
                out.sum(),
            )
            optimizer.step()
        """,
    "lightning_manual_optimization_with_loop": """
        class Model(LightningModule):
            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                for chunk in batch.split(4):
                    loss = self.compute(chunk)
                    self.manual_backward(loss)  # GL001
                    opt.step()
        """,
    "fabric_backward": """
        fabric = L.Fabric()
        model, optimizer = fabric.setup(model, optimizer)
        for batch in dataloader:
            loss = model(batch)
            fabric.backward(loss)  # GL001
            optimizer.step()
        """,
    "epoch_loop_steps_after_batch_loop": """
        for epoch in range(epochs):
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()  # GL001
            optimizer.step()
        """,
    "nanogpt_style_clear_before_the_loop_only": """
        optimizer.zero_grad(set_to_none=True)
        while True:
            for micro_step in range(gradient_accumulation_steps):
                with ctx:
                    logits, loss = model(X, Y)
                    loss = loss / gradient_accumulation_steps
                X, Y = get_batch("train")
                scaler.scale(loss).backward()  # GL001
            if grad_clip != 0.0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            iter_num += 1
            if iter_num > max_iters:
                break
        """,
    "ppo_clear_outside_the_update_epochs": """
        for update in range(num_updates):
            rollouts = collect(envs, agent, num_steps)
            optimizer.zero_grad()
            for epoch in range(update_epochs):
                for mb in rollouts.minibatches(num_minibatches):
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(mb.obs, mb.actions)
                    ratio = (newlogprob - mb.logprobs).exp()
                    pg_loss = torch.max(-mb.advantages * ratio, -mb.advantages * torch.clamp(ratio, 0.8, 1.2)).mean()
                    loss = pg_loss - ent_coef * entropy.mean() + vf_coef * ((newvalue - mb.returns) ** 2).mean()
                    loss.backward()  # GL001
                    nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
                    optimizer.step()
        """,
    "zero_grad_referenced_but_never_called": """
        for images, labels in train_loader:
            optimizer.zero_grad
            outputs = net(images)
            loss = criterion(outputs, labels)
            loss.backward()  # GL001
            optimizer.step()
        """,
    "accumulation_gates_with_different_periods": """
        for i, batch in enumerate(loader):
            if i % 4 == 0:
                optimizer.zero_grad()
            loss = model(batch).loss
            loss.backward()  # GL001
            if i % 2 == 0:
                optimizer.step()
        """,
    "lightning_manual_optimization_without_zero_grad": """
        class LitModel(LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                loss = self.model(batch)
                self.manual_backward(loss)  # GL001
                opt.step()
                return loss
        """,
    "head_optimizer_beside_a_body_optimizer_cleared_alone": """
        import torch
        import torch.nn as nn

        body, head = nn.Linear(5, 8), nn.Linear(8, 2)
        opt_body = torch.optim.SGD(body.parameters(), lr=0.01)
        opt_head = torch.optim.SGD(head.parameters(), lr=0.05)
        for x, y in loader:
            opt_body.zero_grad()  # does not touch the head
            loss = nn.functional.cross_entropy(head(body(x)), y)
            loss.backward()  # GL001
            opt_body.step()
            opt_head.step()
        """,
    "subset_optimizer_cleared_leaves_the_whole_one_stale": """
        import torch
        import torch.nn as nn

        body, head = nn.Linear(5, 8), nn.Linear(8, 2)
        opt_all = torch.optim.SGD([*body.parameters(), *head.parameters()], lr=0.01)
        opt_head = torch.optim.SGD(head.parameters(), lr=0.05)
        for x, y in loader:
            opt_head.zero_grad()  # the body's gradients stay
            loss = nn.functional.cross_entropy(head(body(x)), y)
            loss.backward()  # GL001
            opt_all.step()
            opt_head.step()
        """,
    "escaped_zero_grad_but_the_loop_calls_no_callback": """
        import functools

        import torch

        model = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        clear = functools.partial(opt.zero_grad, set_to_none=True)
        hooks = {"before_backward": [clear]}
        for x, y in loader:
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()  # GL001
            opt.step()
        """,
    "escaped_zero_grad_of_another_optimizer_called_back": """
        import torch

        gen, disc = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
        opt_g = torch.optim.Adam(gen.parameters())
        opt_d = torch.optim.Adam(disc.parameters())
        callbacks = [opt_d.zero_grad]
        for x in loader:
            for cb in callbacks:
                cb()
            d_loss = disc(x).mean() - disc(gen(torch.randn(8, 4)).detach()).mean()
            d_loss.backward()
            opt_d.step()
            g_loss = -disc(gen(torch.randn(8, 4))).mean()
            g_loss.backward()  # GL001
            opt_g.step()
        """,
    "copy_of_the_model_cleared_instead_of_the_model": """
        import copy

        import torch

        student = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
        teacher = copy.deepcopy(student).requires_grad_(False)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
        for x in loader:
            with torch.no_grad():
                soft = teacher(x).softmax(-1)
            loss = torch.nn.functional.kl_div(student(x).log_softmax(-1), soft, reduction="batchmean")
            teacher.zero_grad()
            loss.backward()  # GL001
            optimizer.step()
        """,
    "context_manager_steps_on_exit_and_nothing_clears": """
        import contextlib

        import torch

        @contextlib.contextmanager
        def optimizer_step(optimizer):
            yield
            optimizer.step()

        def train(model, optimizer, loader):
            for inputs, targets in loader:
                with optimizer_step(optimizer):
                    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                    loss.backward()  # GL001
        """,
}


CLEAN = {
    "context_manager_clears_on_entry_and_steps_on_exit": """
        import contextlib

        import torch

        @contextlib.contextmanager
        def optimizer_step(optimizer):
            optimizer.zero_grad()
            try:
                yield
            finally:
                optimizer.step()

        def train(model, optimizer, loader):
            for inputs, targets in loader:
                with optimizer_step(optimizer):
                    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                    loss.backward()
        """,
    "generator_that_clears_advanced_by_next": """
        import torch

        def clearing(optimizer):
            optimizer.zero_grad()
            yield

        def train(model, optimizer, loader):
            for inputs, targets in loader:
                next(clearing(optimizer))
                loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                loss.backward()
                optimizer.step()
        """,
    "scheduled_optimizer_wrapper_cleared": """
        import torch

        class Trainer:
            def __init__(self, model):
                self.model = model
                optim = torch.optim.Adam(self.model.parameters())
                self.schedule = ScheduledOptim(optim, 256, n_warmup_steps=1000)

            def iteration(self, loader):
                for x, y in loader:
                    self.schedule.zero_grad()
                    loss = (self.model(x) - y).pow(2).mean()
                    loss.backward()
                    self.schedule.step_and_update_lr()
        """,
    "wrapper_of_the_optimized_model_cleared": """
        import torch

        model = torch.nn.Linear(6, 3)
        wrapped = Wrapper(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for x, y in loader:
            wrapped.zero_grad()
            loss = (wrapped(x) - y).pow(2).mean()
            loss.backward()
            optimizer.step()
        """,
    "other_model_cleared_while_an_optimizer_holds_an_unread_list": """
        import torch

        gen, disc = Generator(), Discriminator()
        g_params = [p for p in gen.parameters() if p.requires_grad]
        opt_g = torch.optim.Adam(g_params)
        opt_d = torch.optim.Adam(disc.parameters())
        for x in loader:
            gen.zero_grad()
            g_loss = -disc(gen(x)).mean()
            g_loss.backward()
            opt_g.step()
        """,
    "partial_zero_grad_in_a_dict_of_callbacks": """
        import functools

        import torch

        model = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        clear = functools.partial(opt.zero_grad, set_to_none=True)
        hooks = {"before_backward": [clear]}
        for x, y in loader:
            loss = torch.nn.functional.mse_loss(model(x), y)
            for fn in hooks["before_backward"]:
                fn()
            loss.backward()
            opt.step()
        """,
    "bound_zero_grad_appended_to_callbacks": """
        import torch

        model = torch.nn.Linear(4, 2)
        opt = torch.optim.Adam(model.parameters())
        callbacks = []
        callbacks.append(opt.zero_grad)
        for x, y in loader:
            for cb in callbacks:
                cb()
            (model(x) - y).pow(2).mean().backward()
            opt.step()
        """,
    "zero_grad_passed_as_a_callback_argument": """
        import torch

        def train(model, opt, loader, before_batch):
            for x, y in loader:
                before_batch()
                loss = (model(x) - y).pow(2).mean()
                loss.backward()
                opt.step()

        net = torch.nn.Linear(4, 2)
        optimizer = torch.optim.Adam(net.parameters())
        train(net, optimizer, loader, before_batch=optimizer.zero_grad)
        """,
    "callback_table_indexed_in_the_loop": """
        import torch

        model = torch.nn.Linear(4, 2)
        opt = torch.optim.Adam(model.parameters())
        events = {"start": opt.zero_grad}
        for x, y in loader:
            events["start"]()
            (model(x) - y).pow(2).mean().backward()
            opt.step()
        """,
    "optimizer_whose_parameters_cover_another_ones": """
        import torch
        import torch.nn as nn

        body, head = nn.Linear(5, 8), nn.Linear(8, 2)
        opt_all = torch.optim.SGD([*body.parameters(), *head.parameters()], lr=0.01)
        opt_head = torch.optim.SGD(head.parameters(), lr=0.05)
        for x, y in loader:
            opt_all.zero_grad()  # clears the head too
            loss = nn.functional.cross_entropy(head(body(x).relu()), y)
            loss.backward()
            opt_all.step()
            opt_head.step()
        """,
    "whole_model_optimizer_cleared_and_a_submodule_optimizer": """
        import torch

        def train(model, loader):
            opt = torch.optim.Adam(model.parameters())
            opt_head = torch.optim.SGD(model.head.parameters(), lr=0.1)
            for x, y in loader:
                opt.zero_grad()
                loss = (model(x) - y).pow(2).mean()
                loss.backward()
                opt.step()
                opt_head.step()
        """,
    "model_zero_grad_clears_an_optimizer_of_its_submodule": """
        import torch

        def train(model, loader):
            opt = torch.optim.Adam(model.parameters())
            opt_head = torch.optim.SGD(model.head.parameters(), lr=0.1)
            for x, y in loader:
                model.zero_grad()
                loss = (model(x) - y).pow(2).mean()
                loss.backward()
                opt.step()
                opt_head.step()
        """,
    "vanilla_zero_grad_first": """
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        """,
    "zero_grad_at_end_set_to_none": """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        """,
    "zero_grad_right_before_backward": """
        for x, y in loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        """,
    "model_zero_grad": """
        for x, y in loader:
            model.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        """,
    "p_grad_none_loop": """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            for p in model.parameters():
                p.grad = None
        """,
    "p_grad_zero_inplace": """
        for x, y in loader:
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.detach_()
                    p.grad.zero_()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        """,
    "accumulation_modulo_together": """
        for i, (x, y) in enumerate(loader):
            loss = criterion(model(x), y) / accumulation_steps
            loss.backward()
            if (i + 1) % accumulation_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
        """,
    "accumulation_correlated_separate_ifs": """
        for i, batch in enumerate(loader):
            loss = model(batch).loss / accum
            loss.backward()
            if (i+1) % accum == 0:
                scaler.step(optimizer)
                scaler.update()
            if (i + 1) % accum == 0:
                optimizer.zero_grad()
        """,
    "accumulation_clear_at_start_of_period": """
        for step, batch in enumerate(loader):
            if step % grad_accum == 0:
                optimizer.zero_grad()
            loss = model(batch) / grad_accum
            loss.backward()
            if (step + 1) % grad_accum == 0:
                optimizer.step()
        """,
    "accelerate_accumulate": """
        accelerator = Accelerator(gradient_accumulation_steps=4)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
        """,
    "gan_both_cleared": """
        for real in loader:
            opt_d.zero_grad()
            d_loss = bce(D(real), ones) + bce(D(G(z).detach()), zeros)
            d_loss.backward()
            opt_d.step()
            opt_g.zero_grad()
            g_loss = bce(D(G(z)), ones)
            g_loss.backward()
            opt_g.step()
        """,
    "helper_clears": """
        def reset_grads(model):
            for p in model.parameters():
                p.grad = None

        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            reset_grads(model)
        """,
    "method_helper_clears_via_self": """
        class Trainer:
            def _clear(self):
                self.optimizer.zero_grad()

            def train(self, loader):
                for batch in loader:
                    self._clear()
                    loss = self.model(batch)
                    loss.backward()
                    self.optimizer.step()
        """,
    "helper_does_whole_update": """
        def train_step(model, optimizer, batch):
            optimizer.zero_grad()
            loss = model(batch).mean()
            loss.backward()
            optimizer.step()
            return loss

        for epoch in range(10):
            for batch in loader:
                train_step(model, optimizer, batch)
        """,
    "lbfgs_closure_clears": """
        optimizer = torch.optim.LBFGS(model.parameters())
        for i in range(20):
            def closure():
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                return loss
            optimizer.step(closure)
        """,
    "lightning_automatic_optimization_no_loop": """
        class LitModel(LightningModule):
            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = F.cross_entropy(self(x), y)
                self.log("train_loss", loss)
                return loss

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-3)
        """,
    "lightning_manual_optimization_clears": """
        class LitModel(LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                opt.zero_grad()
                loss = self.model(batch)
                self.manual_backward(loss)
                opt.step()
                return loss
        """,
    "lightning_manual_accumulation": """
        class LitModel(LightningModule):
            automatic_optimization = False

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                loss = self.compute_loss(batch) / 4
                self.manual_backward(loss)
                if (batch_idx + 1) % 4 == 0:
                    opt.step()
                    opt.zero_grad()
        """,
    "deepspeed_engine": """
        import deepspeed

        model_engine, optimizer, _, _ = deepspeed.initialize(args=args, model=model, model_parameters=params)
        for step, batch in enumerate(data_loader):
            loss = model_engine(batch)
            model_engine.backward(loss)
            model_engine.step()
        """,
    "scheduler_step_only": """
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
        lr_sched = get_scheduler("linear", optimizer=optimizer)
        for epoch in range(100):
            loss = evaluate_loss(model)
            loss.backward()
            scheduler.step()
            lr_sched.step()
        """,
    "rl_env_step_and_ema": """
        ema = ExponentialMovingAverage(model.parameters(), decay=0.99)
        for t in range(steps):
            action = policy(obs)
            obs, reward, done, info = env.step(action)
            loss = -reward * log_prob
            loss.backward()
            ema.step()
        """,
    "saliency_no_step": """
        model.eval()
        for image, label in dataset:
            image.requires_grad_(True)
            score = model(image.unsqueeze(0))[0, label]
            score.backward()
            saliency = image.grad.abs().max(dim=0).values
            saliencies.append(saliency)
        """,
    "fisher_information": """
        fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        for x, y in loader:
            model.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            for n, p in model.named_parameters():
                fisher[n] += p.grad.pow(2)
        """,
    "meta_learning_autograd_grad": """
        for task in tasks:
            meta_opt.zero_grad()
            fast = list(model.parameters())
            for _ in range(inner_steps):
                inner_loss = task.loss(model, fast)
                grads = torch.autograd.grad(inner_loss, fast, create_graph=True)
                fast = [w - alpha * g for w, g in zip(fast, grads)]
            outer_loss = task.loss(model, fast)
            outer_loss.backward()
            meta_opt.step()
        """,
    "break_and_continue_paths": """
        for i, (x, y) in enumerate(loader):
            optimizer.zero_grad()
            if x is None:
                continue
            loss = criterion(model(x), y)
            if torch.isnan(loss):
                break
            loss.backward()
            optimizer.step()
        """,
    "try_finally_clears": """
        for batch in loader:
            try:
                loss = model(batch)
                loss.backward()
                optimizer.step()
            finally:
                optimizer.zero_grad()
        """,
    "nested_epoch_batch_clean": """
        for epoch in range(epochs):
            model.train()
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
            scheduler.step()
            validate(model)
        """,
    "unknown_object_step": """
        for batch in loader:
            loss = model(batch)
            loss.backward()
            trainer.step()
            self.updater.step()
        """,
    "optimizer_handed_to_unknown_function": """
        from mylib.training import run_update

        for batch in loader:
            loss = model(batch)
            loss.backward()
            run_update(optimizer)
            optimizer.step()
        """,
    "while_loop_counter_accumulation": """
        step = 0
        while step < total_steps:
            loss = model(next(batches)).mean()
            loss.backward()
            if step % accum_steps == 0:
                opt.step()
                opt.zero_grad()
            step += 1
        """,
    "no_sync_accumulation": """
        for i, batch in enumerate(loader):
            if (i + 1) % accum != 0:
                with model.no_sync():
                    loss = model(batch).loss
                    loss.backward()
                continue
            loss = model(batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        """,
    "zero_grad_via_set_to_none_on_all_groups": """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
        """,
    "accumulation_flag_variable_and_scaled_loss_name": """
        optimizer.zero_grad()
        for batch_idx, batch in enumerate(pbar):
            is_last_accum = (batch_idx + 1) % gradient_accumulation_steps == 0
            with torch.amp.autocast(device_type="cuda", dtype=autocast_dtype, enabled=use_amp):
                loss = compute_loss(model, batch) / gradient_accumulation_steps
            if use_amp:
                scaled_loss = scaler.scale(loss)
                scaled_loss.backward()
            else:
                loss.backward()
            if is_last_accum:
                if use_amp:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
            if is_last_accum:
                optimizer.zero_grad(set_to_none=True)
        """,
    "helper_step_with_keyword_arguments": """
        def _optimizer_step(*, model, optimizer, scaler, gradient_clip_norm):
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), gradient_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

        def train_epoch(model, loader, optimizer, scaler, accum):
            optimizer.zero_grad(set_to_none=True)
            for batch_index, batch in enumerate(loader, start=1):
                loss = model(batch)
                scaler.scale(loss / accum).backward()
                if batch_index % accum == 0 or batch_index == len(loader):
                    _optimizer_step(model=model, optimizer=optimizer, scaler=scaler, gradient_clip_norm=1.0)
        """,
    "accumulation_or_flag": """
        for batch_idx, (data, target) in enumerate(loader, start=1):
            loss = calculate_loss(model(data), target)
            if gradient_accumulation:
                loss /= gradient_accumulation_steps
            loss.backward()
            if not gradient_accumulation or (batch_idx % gradient_accumulation_steps == 0):
                optimizer.step()
                optimizer.zero_grad()
        """,
    "nanogpt_style_micro_steps": """
        X, Y = get_batch("train")
        t0 = time.time()
        while True:
            lr = get_lr(iter_num) if decay_lr else learning_rate
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            if iter_num % eval_interval == 0 and master_process:
                losses = estimate_loss()
            if iter_num == 0 and eval_only:
                break
            for micro_step in range(gradient_accumulation_steps):
                if ddp:
                    model.require_backward_grad_sync = micro_step == gradient_accumulation_steps - 1
                with ctx:
                    logits, loss = model(X, Y)
                    loss = loss / gradient_accumulation_steps
                X, Y = get_batch("train")
                scaler.scale(loss).backward()
            if grad_clip != 0.0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            iter_num += 1
            if iter_num > max_iters:
                break
        """,
    "mingpt_style_trainer": """
        class Trainer:
            def __init__(self, config, model, train_dataset):
                self.model = model
                self.callbacks = defaultdict(list)

            def trigger_callbacks(self, onevent):
                for callback in self.callbacks.get(onevent, []):
                    callback(self)

            def run(self):
                model, config = self.model, self.config
                self.optimizer = model.configure_optimizers(config)
                data_iter = iter(train_loader)
                while True:
                    try:
                        batch = next(data_iter)
                    except StopIteration:
                        data_iter = iter(train_loader)
                        batch = next(data_iter)
                    x, y = [t.to(self.device) for t in batch]
                    logits, self.loss = model(x, y)
                    model.zero_grad(set_to_none=True)
                    self.loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_norm_clip)
                    self.optimizer.step()
                    self.trigger_callbacks("on_batch_end")
                    self.iter_num += 1
                    if config.max_iters is not None and self.iter_num >= config.max_iters:
                        break
        """,
    "reinforce_finish_episode_helper": """
        def finish_episode():
            R = 0
            returns = deque()
            for r in policy.rewards[::-1]:
                R = r + args.gamma * R
                returns.appendleft(R)
            policy_loss = torch.cat([-log_prob * R for log_prob, R in zip(policy.saved_log_probs, returns)]).sum()
            optimizer.zero_grad()
            policy_loss.backward()
            optimizer.step()
            del policy.rewards[:]

        for i_episode in count(1):
            state, _ = env.reset()
            for t in range(1, 10000):
                action = select_action(state)
                state, reward, done, _, _ = env.step(action)
                policy.rewards.append(reward)
                if done:
                    break
            finish_episode()
        """,
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(name):
    source = FLAGGED[name]
    assert expected(source), "a flagged case must mark at least one line"
    assert reported(source) == expected(source)


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean(name):
    assert reported(CLEAN[name]) == []


# ---------------------------------------------------------------------------------------------
# Helpers in other modules of the project, configured helper names, messages, de-duplication
# ---------------------------------------------------------------------------------------------

LOOP_WITH_IMPORTED_HELPER = """
    import torch
    from {module} import {helper}

    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward(){mark}
        optimizer.step()
        {helper}({argument})
    """


def _project(tmp_path, helper_source: str, module: str = "utils"):
    path = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.parents:
        if parent == tmp_path:
            break
        parent.joinpath("__init__.py").touch()
    path.write_text(textwrap.dedent(helper_source))
    return AnalysisOptions(project_root=str(tmp_path)), str(tmp_path / "train.py")


def test_imported_helper_that_clears_is_followed(tmp_path):
    options, path = _project(
        tmp_path,
        """
        def reset_gradients(*optimizers):
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
        """,
    )
    source = LOOP_WITH_IMPORTED_HELPER.format(module="utils", helper="reset_gradients", argument="optimizer", mark="")
    assert reported(source, options, path) == []


def test_imported_helper_in_a_package_that_clears_through_the_model(tmp_path):
    options, path = _project(
        tmp_path,
        """
        def drop_grads(module):
            for p in module.parameters():
                p.grad = None
        """,
        module="mylib.train_utils",
    )
    source = LOOP_WITH_IMPORTED_HELPER.format(
        module="mylib.train_utils", helper="drop_grads", argument="model", mark=""
    )
    assert reported(source, options, path) == []


def test_imported_helper_that_only_logs_does_not_hide_the_bug(tmp_path):
    options, path = _project(
        tmp_path,
        """
        def log_metrics(value):
            print(value)
        """,
    )
    source = LOOP_WITH_IMPORTED_HELPER.format(
        module="utils", helper="log_metrics", argument="loss.item()", mark="  # GL001"
    )
    assert reported(source, options, path) == expected(source)


def test_imported_helper_that_steps_is_followed(tmp_path):
    options, path = _project(
        tmp_path,
        """
        import torch

        def clip_and_step(model, optimizer, max_norm=1.0):
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
        """,
    )
    source = """
        from utils import clip_and_step

        for batch in loader:
            loss = model(batch).mean()
            loss.backward()  # GL001
            clip_and_step(model, optimizer)
        """
    assert reported(source, options, path) == expected(source)


def test_unresolvable_project_helper_that_might_clear_means_silence(tmp_path):
    source = """
        from .helpers import reset_state

        for batch in loader:
            loss = model(batch).mean()
            loss.backward()
            optimizer.step()
            reset_state(model)
        """
    assert reported(source, AnalysisOptions(project_root=str(tmp_path)), str(tmp_path / "train.py")) == []


def test_helper_module_that_does_not_parse_is_unknown_not_a_crash(tmp_path):
    options, path = _project(tmp_path, "def reset_grads(model:\n    pass\n")
    source = LOOP_WITH_IMPORTED_HELPER.format(module="utils", helper="reset_grads", argument="model", mark="")
    assert reported(source, options, path) == []


def test_configured_clear_step_and_backward_functions():
    source = """
        for batch in loader:
            loss = model(batch)
            run_backward(loss)  # GL001
            apply_gradients(optimizer)
        """
    options = AnalysisOptions(backward_functions=("run_backward",), step_functions=("apply_gradients",))
    assert reported(source, options) == expected(source)
    cleared = AnalysisOptions(
        backward_functions=("run_backward",), step_functions=("apply_gradients",), clear_functions=("wipe",)
    )
    wiped = """
        for batch in loader:
            loss = model(batch)
            run_backward(loss)
            apply_gradients(optimizer)
            wipe()
        """
    assert reported(wiped, cleared) == []
    assert reported(source) == []  # without configuration nothing is known about these helpers


def test_message_names_optimizer_step_line_and_fix():
    source = """
        import torch

        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        """
    (finding,) = findings(source)
    assert finding.code == "GL001" and finding.name == "missing-zero-grad"
    assert (finding.line, finding.column, finding.end_line, finding.end_column) == (7, 5, 7, 20)
    assert finding.message == (
        "`loss.backward()` adds to gradients that `optimizer.step()` (line 8) already applied: "
        "`optimizer`'s gradients are never cleared between steps; "
        "call `optimizer.zero_grad()` before the backward or after the step"
    )


def test_message_for_a_clear_that_some_paths_skip():
    (finding,) = findings(FLAGGED["continue_skips_clear"])
    assert "not cleared on every path between steps" in finding.message


def test_multiline_backward_spans_the_whole_call():
    (finding,) = findings(FLAGGED["multiline_backward_call"])
    assert (finding.line, finding.end_line) == (4, 6)


def test_message_for_a_helper_running_the_backward():
    (finding,) = findings(FLAGGED["helper_runs_backward"])
    assert finding.message.startswith("`compute_and_backprop(model, batch)` runs a backward that adds to gradients")


def test_backward_inside_nested_loops_is_reported_once():
    source = """
        for epoch in range(3):
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()  # GL001
                optimizer.step()
            for x, y in val_loader:
                print(model(x))
        """
    assert reported(source) == expected(source)


def test_helper_with_its_own_loop_is_reported_in_the_helper_not_at_the_call():
    source = """
        def train_epoch(model, loader, optimizer):
            for x, y in loader:
                loss = F.mse_loss(model(x), y)
                loss.backward()  # GL001
                optimizer.step()

        for epoch in range(10):
            train_epoch(model, loader, optimizer)
        """
    assert reported(source) == expected(source)


def test_reassigned_condition_is_a_new_decision():
    source = """
        for i, batch in enumerate(loader):
            ready = i > warmup
            loss = model(batch)
            loss.backward()  # GL001
            if ready:
                optimizer.step()
            ready = check_ready(i)
            if ready:
                optimizer.zero_grad()
        """
    assert reported(source) == expected(source)


def test_condition_reassigned_at_the_end_carries_into_the_next_iteration():
    # `ready` decides the clear and, unchanged, the next iteration's step: every step is preceded
    # by a clear, so this is correct code
    source = """
        for i, batch in enumerate(loader):
            loss = model(batch)
            loss.backward()
            if ready:
                optimizer.step()
            ready = check_ready(i)
            if ready:
                optimizer.zero_grad()
        """
    assert reported(source) == []


def test_same_condition_twice_is_one_decision():
    source = """
        for i, batch in enumerate(loader):
            loss = model(batch)
            loss.backward()
            if ready:
                optimizer.step()
            log(i)
            if ready:
                optimizer.zero_grad()
        """
    assert reported(source) == []


def test_random_condition_is_never_assumed_equal():
    source = """
        for batch in loader:
            loss = model(batch)
            loss.backward()  # GL001
            if random.random() < 0.5:
                optimizer.step()
            if random.random() < 0.5:
                optimizer.zero_grad()
        """
    assert reported(source) == expected(source)


@pytest.mark.parametrize(
    "source",
    [
        "def f():\n    f()\nfor x in y:\n    f()\n    x.backward()\n    opt.step()\n",  # recursive helper
        "class A:\n    def g(self):\n        self.g()\n    def run(self):\n        while 1:\n            self.g()\n",
        "for x in y:\n    opt.step(lambda: (opt.zero_grad(), x.backward()))\n",
        "while True:\n    try:\n        pass\n    finally:\n        break\n",
        "for a, *b in c:\n    del a.grad\n    [p.backward() for p in b]\n    (opt := make()).step()\n",
        "async def f():\n    async for x in y:\n        x.backward()\n        opt.step()\n",
    ],
)
def test_odd_code_does_not_crash(source):
    findings(source)


def test_oom_handler_that_continues_after_a_failed_backward():
    # an exception can only come before the step has run: the clear at the end is not skipped
    # after a successful step
    source = """
        for batch in loader:
            try:
                loss = model(batch).loss
                loss.backward()
                optimizer.step()
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                continue
            optimizer.zero_grad()
        """
    assert reported(source) == []


def test_handler_that_steps_without_clearing():
    source = """
        for batch in loader:
            try:
                loss = model(batch).loss
                loss.backward()  # GL001
                optimizer.step()
                optimizer.zero_grad()
            except ValueError:
                optimizer.step()
        """
    assert reported(source) == expected(source)


def test_nested_defs_resolve_where_they_are_visible():
    # two functions each define their own `closure`; only the second one forgets to clear
    source = """
        def fit_clean(model, optimizer, x, y):
            def closure():
                optimizer.zero_grad()
                loss = F.mse_loss(model(x), y)
                loss.backward()
                return loss
            for _ in range(10):
                optimizer.step(closure)

        def fit_buggy(model, optimizer, x, y):
            def closure():
                loss = F.mse_loss(model(x), y)
                loss.backward()
                return loss
            for _ in range(10):
                optimizer.step(closure)  # GL001
        """
    assert reported(source) == expected(source)


def test_step_with_a_non_closure_argument_is_not_an_optimizer_step():
    source = """
        for task in tasks:
            with higher.innerloop_ctx(model, inner_opt) as (fmodel, diff_opt):
                for _ in range(5):
                    loss = task.loss(fmodel)
                    diff_opt.step(loss)
                meta_loss = task.loss(fmodel)
                meta_loss.backward()
        """
    assert reported(source) == []


def test_many_correlated_branches_are_followed_without_blowing_up():
    # 60 branches on 30 flags: the path search keeps correlated decisions instead of enumerating
    # 2**60 paths (a regression would hang here, not fail a stopwatch: no timed assertion)
    branches = "".join(f"    if flag{k}:\n        log({k})\n    if flag{k}:\n        count({k})\n" for k in range(30))
    source = (
        "for batch in loader:\n    loss = model(batch)\n    loss.backward()\n" + branches + "    optimizer.step()\n"
    )
    assert [f.line for f in lint_options(source, "train.py", codes=["GL001"])] == [3]


def test_huge_loop_body_is_skipped_not_slow():
    body = "".join(f"    x{k} = helper(x{k - 1})\n    if x{k}:\n        y = {k}\n" for k in range(1, 1100))
    source = "for batch in loader:\n    loss = model(batch)\n    loss.backward()\n" + body + "    optimizer.step()\n"
    assert lint_options(source, "train.py", codes=["GL001"]) == []  # over the node budget: silent


def test_a_helpers_own_optimizer_is_new_at_every_call():
    # test-time adaptation: each call copies the model and makes a fresh optimizer for one step
    source = """
        import copy
        import torch

        def adapt_and_predict(model, batch):
            adapted = copy.deepcopy(model)
            inner_opt = torch.optim.SGD(adapted.parameters(), lr=0.01)
            adapted(batch).entropy().mean().backward()
            inner_opt.step()
            return adapted(batch)

        for batch in test_loader:
            predictions.append(adapt_and_predict(model, batch))
        """
    assert reported(source) == []


def test_a_nested_helper_steps_the_enclosing_functions_optimizer():
    source = """
        def train(model, loader):
            opt = torch.optim.Adam(model.parameters())

            def update():
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()

            for batch in loader:
                model(batch).mean().backward()  # GL001
                update()
        """
    assert reported(source) == expected(source)


def test_method_of_a_module_class_instance_is_followed():
    source = """
        class Stepper:
            def __init__(self, model):
                self.opt = torch.optim.SGD(model.parameters(), lr=0.1)

            def apply(self):
                self.opt.step()

            def reset(self):
                self.opt.zero_grad()

        stepper = Stepper(model)
        for batch in loader:
            model(batch).sum().backward()  # GL001
            stepper.apply()
        for batch in loader:
            model(batch).sum().backward()
            stepper.apply()
            stepper.reset()
        """
    assert reported(source) == expected(source)


def test_unseen_method_named_like_a_gradient_clear_counts_as_one():
    source = """
        for batch in loader:
            loss = model(batch)
            loss.backward()
            optimizer.step()
            engine_wrapper.zero_all_grads()
        """
    assert reported(source) == []


def test_lightning_manual_gan_loop_toggle_optimizer_does_not_clear():
    source = """
        class GAN(LightningModule):
            def training_step(self, batch, batch_idx):
                opt_g, opt_d = self.optimizers()
                for real in batch.split(8):
                    self.toggle_optimizer(opt_d)
                    d_loss = self.discriminator_loss(real)
                    self.manual_backward(d_loss)  # GL001
                    opt_d.step()
                    self.untoggle_optimizer(opt_d)

                    self.toggle_optimizer(opt_g)
                    opt_g.zero_grad()
                    g_loss = self.generator_loss(real)
                    self.manual_backward(g_loss)
                    opt_g.step()
                    self.untoggle_optimizer(opt_g)
        """
    assert reported(source) == expected(source)


def test_torch_xla_optimizer_step():
    source = """
        import torch_xla.core.xla_model as xm

        for data, target in loader:
            loss = loss_fn(model(data), target)
            loss.backward()  # GL001
            xm.optimizer_step(optimizer)
        """
    assert reported(source) == expected(source)


def test_one_backward_for_two_optimizers_stepped_in_either_order():
    source = """
        for src, tgt in pairs:
            enc_optimizer.zero_grad()
            loss = seq2seq_loss(encoder, decoder, src, tgt)
            loss.backward()  # GL001
            enc_optimizer.step()
            dec_optimizer.step()
        """
    assert reported(source) == expected(source)


def test_grad_norm_logging_loop_is_not_a_clear():
    source = """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()  # GL001
            total_norm = 0.0
            for p in model.parameters():
                if p.grad is not None:
                    total_norm += p.grad.detach().norm(2).item() ** 2
            optimizer.step()
        """
    assert reported(source) == expected(source)


def test_relative_import_and_package_reexport_are_followed(tmp_path):
    # `finish` says nothing by its name and gets no model: only reading it shows that it clears
    package = tmp_path / "trainer"
    package.mkdir()
    (package / "hooks.py").write_text(
        "import torch\n\n"
        "def finish(stats):\n    stats.append(1)\n    torch.nn.Module.zero_grad(MODEL)\n    MODEL.zero_grad()\n\n"
        "def record(stats):\n    stats.append(1)\n"
    )
    (package / "__init__.py").write_text("from .hooks import finish, record\n")
    loop = """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward(){mark}
            optimizer.step()
            {helper}(history)
        """
    options = AnalysisOptions(project_root=str(tmp_path))
    relative = "from .hooks import finish\n" + textwrap.dedent(loop.format(helper="finish", mark=""))
    assert reported(relative, options, str(package / "loop.py")) == []
    reexported = "from trainer import finish\n" + textwrap.dedent(loop.format(helper="finish", mark=""))
    assert reported(reexported, options, str(tmp_path / "train.py")) == []
    not_clearing = "from trainer import record\n" + textwrap.dedent(loop.format(helper="record", mark="  # GL001"))
    assert reported(not_clearing, options, str(tmp_path / "train.py")) == expected(not_clearing)


def test_wrapper_class_whose_step_clears_is_followed():
    source = """
        class ScheduledOptim:
            def __init__(self, optimizer, warmup):
                self._optimizer = optimizer
                self.warmup = warmup

            def step(self):
                self._update_learning_rate()
                self._optimizer.step()
                self._optimizer.zero_grad()

            def _update_learning_rate(self):
                self.n_steps += 1

        optimizer = ScheduledOptim(torch.optim.Adam(model.parameters(), betas=(0.9, 0.98)), 4000)
        for batch in loader:
            loss = model(batch)
            loss.backward()
            optimizer.step()
        """
    assert reported(source) == []


def test_custom_optimizer_subclass_step_is_a_step():
    source = """
        class SignSGD(torch.optim.Optimizer):
            def step(self, closure=None):
                for group in self.param_groups:
                    for p in group["params"]:
                        p.data.add_(p.grad.sign(), alpha=-group["lr"])

        opt = SignSGD(model.parameters(), dict(lr=0.01))
        for batch in loader:
            loss = model(batch)
            loss.backward()  # GL001
            opt.step()
        """
    assert reported(source) == expected(source)


def test_optimizer_wrapper_class_from_the_project_is_not_assumed_to_be_a_plain_optimizer():
    source = """
        from transformer.Optim import ScheduledOptim

        optimizer = ScheduledOptim(optim.Adam(model.parameters(), betas=(0.9, 0.98), eps=1e-09), 2.0, 512, 4000)
        for batch in training_data:
            loss = cal_loss(model(batch), batch.gold)
            loss.backward()
            optimizer.step_and_update_lr()
            optimizer.step()
        """
    assert reported(source) == []


def test_gate_flag_and_modulo_test_are_one_decision():
    source = """
        for i, batch in enumerate(loader):
            if i % accum == 0:
                optimizer.zero_grad()
            do_step = (i + 1) % accum == 0
            loss = model(batch) / accum
            loss.backward()
            if do_step:
                optimizer.step()
        """
    assert reported(source) == []


def test_helper_handed_the_optimizer_is_followed_even_under_another_name():
    source = """
        from mylib import reset_state

        def housekeeping(o):
            reset_state(o)

        for batch in loader:
            loss = model(batch)
            loss.backward()
            optimizer.step()
            housekeeping(optimizer)
        """
    assert reported(source) == []


# ---------------------------------------------------------------------------------------------
# Issue 11: trainer classes, optimizer containers, hand-written updates, gates that line up only
# for k > 1, helpers in other modules
# ---------------------------------------------------------------------------------------------

TRAINERS_FLAGGED = {
    # A2
    "trainer_chain_with_optimizer_container": """
        class Optimizers:
            def __init__(self, *opts): self.opts = opts
            def step(self):
                for o in self.opts: o.step()
            def zero_grad(self):
                for o in self.opts: o.zero_grad()
        class Recipe:
            def forward_backward(self, batch):
                loss = self.model(batch).mean()
                loss.backward()  # GL001
                return loss
            def train_step(self, batch):
                loss = self.forward_backward(batch)
                self.optimizers.step()
                return loss
            def train(self, loader):
                self.optimizers.zero_grad()
                for batch in loader:
                    self.train_step(batch)
        """,
    "trainer_recipe_with_context_managers_and_a_progress_bar": """
        class SFTRecipe(Engine):
            def forward_backward(self, batch, labels, do_backward=True):
                with self.train_context(self.cp_ctx):
                    with self.maybe_enable_amp:
                        loss = self.loss_fn(self.model(batch), labels)
                    if do_backward:
                        loss.backward()  # GL001
                return loss

            def train_step(self, batch):
                labels = batch.pop("labels")
                loss = self.forward_backward(batch, labels)
                self.pbar.update(1)
                self.pbar.set_description(f"{self.step}|Loss: {loss}")
                self.optimizers.step()
                self.lr_schedulers.step()

            def train(self):
                self.optimizers.zero_grad()
                while self.step < self.num_steps:
                    self.train_step(next(self.loader))
                    self.step += 1
        """,
    "container_bound_in_init_under_a_neutral_name": """
        import torch

        class MultiOpt:
            def __init__(self, *opts):
                self.opts = list(opts)

            def step(self):
                for o in self.opts:
                    o.step()

            def zero_grad(self):
                for o in self.opts:
                    o.zero_grad(set_to_none=True)

        class Trainer:
            def __init__(self, encoder, decoder):
                self.encoder, self.decoder = encoder, decoder
                self.both = MultiOpt(torch.optim.Adam(encoder.parameters()), torch.optim.Adam(decoder.parameters()))

            def fit(self, loader, epochs):
                for epoch in range(epochs):
                    self.both.zero_grad()
                    for x in loader:
                        loss = (self.decoder(self.encoder(x)) - x).pow(2).mean()
                        loss.backward()  # GL001
                        self.both.step()
        """,
    "module_level_trainer_instance_runs_the_whole_step": """
        import torch

        class Trainer:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

            def train_step(self, x, y):
                loss = torch.nn.functional.cross_entropy(self.model(x), y)
                loss.backward()
                self.optimizer.step()
                return loss.item()

        trainer = Trainer(net)
        trainer.optimizer.zero_grad()
        for x, y in loader:
            trainer.train_step(x, y)  # GL001
        """,
    "trainer_step_method_steps_and_clears_only_in_setup": """
        class Learner:
            def setup(self):
                self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
                self.opt.zero_grad()

            def compute_loss(self, batch):
                return self.model(**batch).loss

            def backprop(self, loss):
                loss.backward()  # GL001

            def update(self):
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.opt.step()

            def run(self, loader):
                self.setup()
                for batch in loader:
                    loss = self.compute_loss(batch)
                    self.backprop(loss)
                    self.update()
        """,
    # A3 and other hand-written updates
    "manual_sgd_under_no_grad": """
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward()  # GL001
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
        """,
    "tutorial_linear_regression_data_update": """
        import torch

        w = torch.randn(3, 1, requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        for epoch in range(100):
            pred = x @ w + b
            loss = ((pred - y) ** 2).mean()
            loss.backward()  # GL001
            w.data -= 0.01 * w.grad
            b.data -= 0.01 * b.grad
        """,
    "add_with_alpha_in_a_helper": """
        def sgd_update(params, lr):
            for p in params:
                if p.grad is not None:
                    p.data.add_(p.grad, alpha=-lr)

        for step, (x, y) in enumerate(loader):
            loss = criterion(net(x), y)
            loss.backward()  # GL001
            sgd_update(net.parameters(), lr=0.05)
        """,
    "sub_in_place_with_scaled_gradient": """
        for batch in loader:
            model(batch).sum().backward()  # GL001
            with torch.no_grad():
                for param in model.parameters():
                    param.sub_(learning_rate * param.grad)
        """,
    "assignment_of_moved_data": """
        for i in range(iterations):
            loss = loss_fn(model(inputs), targets)
            loss.backward()  # GL001
            for param in model.parameters():
                param.data = param.data - lr * param.grad.data
        """,
    "manual_update_cleared_only_on_the_first_iteration": """
        for i, (x, y) in enumerate(loader):
            if i == 0:
                model.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()  # GL001
            for p in model.parameters():
                p.data.add_(-lr, p.grad.data)
        """,
    "manual_update_with_the_clear_before_the_epoch_loop_only": """
        model.zero_grad()
        for epoch in range(epochs):
            for x, y in loader:
                out = model(x)
                loss = criterion(out, y)
                loss.backward()  # GL001
                with torch.no_grad():
                    for name, p in model.named_parameters():
                        p.data.sub_(lr * p.grad.data)
        """,
    "manual_update_of_a_parameter_list": """
        params = [W1, b1, W2, b2]
        for it in range(n_iters):
            hidden = torch.tanh(X @ W1 + b1)
            loss = F.cross_entropy(hidden @ W2 + b2, Y)
            loss.backward()  # GL001
            for p in params:
                p.data += -lr * p.grad
        """,
    "pgd_attack_updating_the_input_in_place": """
        delta = torch.zeros_like(x, requires_grad=True)
        for _ in range(attack_steps):
            loss = F.cross_entropy(model(x + delta), y)
            loss.backward()  # GL001
            delta.data += alpha * delta.grad.sign()
            delta.data.clamp_(-eps, eps)
        """,
    "pate_gan_teacher_list_clears_do_not_clear_the_generator": """
        opt_g = optim.Adam(generator.parameters(), lr=1e-4)
        opt_t = [optim.Adam(t.parameters(), lr=1e-4) for t in teachers]
        while eps < budget:
            for i, teacher in enumerate(teachers):
                opt_t[i].zero_grad()
                loss_t = bce(teacher(real[i]), ones) + bce(teacher(generator(noise())), zeros)
                loss_t.backward()
                opt_t[i].step()
            loss_g = bce(student(generator(noise())), ones)
            loss_g.backward()  # GL001
            opt_g.step()
            eps = spent()
        """,
    # A4 and variants
    "gates_that_line_up_only_for_k_above_one": """
        for it, (x, y) in enumerate(loader, start=1):
            if it % steps_per_update == 1:
                opt.zero_grad()
            (F.mse_loss(model(x), y) / steps_per_update).backward()  # GL001
            if it % steps_per_update == 0:
                opt.step()
        """,
    "gates_through_flags_that_line_up_only_for_k_above_one": """
        for step, batch in enumerate(train_loader, 1):
            start_of_window = step % args.grad_accum == 1
            end_of_window = step % args.grad_accum == 0
            if start_of_window:
                optimizer.zero_grad()
            loss = model(**batch).loss / args.grad_accum
            loss.backward()  # GL001
            if end_of_window:
                optimizer.step()
                scheduler.step()
        """,
    "shifted_counter_gates_that_line_up_only_for_k_above_one": """
        for i, batch in enumerate(loader):
            if (i + 1) % accumulation_steps == 1:
                optimizer.zero_grad()
            scaler.scale(model(batch).loss).backward()  # GL001
            if (i + 1) % accumulation_steps == 0:
                scaler.step(optimizer)
                scaler.update()
        """,
    "gates_with_a_nonzero_remainder_for_the_clear_in_a_method": """
        class Trainer:
            def train_epoch(self, loader):
                for i, batch in enumerate(loader):
                    if i % self.accum == 1:
                        self.optimizer.zero_grad()
                    self.model(batch).loss.backward()  # GL001
                    if not i % self.accum:
                        self.optimizer.step()
        """,
    "rl_agent_learn_method_with_the_clear_in_init": """
        class DQNAgent:
            def __init__(self, q_net, lr):
                self.q_net = q_net
                self.optimizer = torch.optim.Adam(q_net.parameters(), lr=lr)
                self.optimizer.zero_grad()

            def learn(self, batch):
                q = self.q_net(batch.obs).gather(1, batch.actions)
                loss = F.smooth_l1_loss(q, batch.targets)
                loss.backward()
                self.optimizer.step()

            def train(self, buffer, steps):
                for _ in range(steps):
                    self.learn(buffer.sample(64))  # GL001
        """,
    "accelerate_trainer_class_backward_in_its_own_method": """
        class Trainer:
            def __init__(self, accelerator, model, optimizer):
                self.accelerator = accelerator
                self.model, self.optimizer = accelerator.prepare(model, optimizer)

            def compute_and_backprop(self, batch):
                loss = self.model(**batch).loss
                self.accelerator.backward(loss)  # GL001
                return loss

            def train_epoch(self, loader):
                for batch in loader:
                    loss = self.compute_and_backprop(batch)
                    self.accelerator.clip_grad_norm_(self.model.parameters(), 1.0)
                    self.optimizer.step()
        """,
    "ignite_process_function_with_gates_that_line_up_only_for_k_above_one": """
        from ignite.engine import Engine

        class MLEEngine(Engine):
            def __init__(self, func, model, optimizer, config):
                self.model, self.optimizer, self.config = model, optimizer, config
                super().__init__(func)

            @staticmethod
            def train(engine, mini_batch):
                engine.model.train()
                if engine.state.iteration % engine.config.iteration_per_update == 1:
                    engine.optimizer.zero_grad()
                loss = engine.model(mini_batch).mean() / engine.config.iteration_per_update
                loss.backward()  # GL001
                if engine.state.iteration % engine.config.iteration_per_update == 0:
                    engine.optimizer.step()
                return float(loss)
        """,
    "ignite_update_function_never_clearing": """
        from ignite.engine import Engine, Events

        def update(engine, batch):
            model.train()
            x, y = prepare_batch(batch)
            loss = criterion(model(x), y)
            loss.backward()  # GL001
            optimizer.step()
            return loss.item()

        trainer = Engine(update)
        trainer.run(train_loader, max_epochs=5)
        """,
    "ignite_process_function_nested_in_a_factory": """
        import ignite.distributed as idist
        from ignite.engine import Engine

        def create_trainer(model, optimizer, criterion, scaler):
            def train_step(engine, batch):
                x, y = batch[0].to(idist.device()), batch[1].to(idist.device())
                model.train()
                with autocast(enabled=True):
                    loss = criterion(model(x), y)
                scaler.scale(loss).backward()  # GL001
                scaler.step(optimizer)
                scaler.update()
                return {"batch loss": loss.item()}

            return Engine(train_step)
        """,
}

TRAINERS_CLEAN = {
    "unseen_method_of_the_instance_named_like_a_clear_still_counts": """
        class Trainer(Base):
            def train(self, loader):
                for batch in loader:
                    self.model(batch).loss.backward()
                    self.optimizer.step()
                    self.reset_optimizer_state()
                    self.pbar.update(1)
        """,
    "ignite_update_function_clearing_first": """
        from ignite.engine import Engine

        def update(engine, batch):
            model.train()
            optimizer.zero_grad()
            x, y = batch
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            return loss.item()

        def evaluate(engine, batch):
            with torch.no_grad():
                return model(batch[0]), batch[1]

        trainer = Engine(update)
        """,
    "ignite_accumulation_with_aligned_gates": """
        from ignite.engine import Engine

        def update(engine, batch):
            loss = criterion(model(batch[0]), batch[1]) / accumulation_steps
            loss.backward()
            if engine.state.iteration % accumulation_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
            return loss.item()
        """,
    "ignite_backward_helper_called_by_a_clearing_process_function": """
        from ignite.engine import Engine

        def create_trainer(model, optimizer, criterion):
            def backward_pass(engine, loss):
                loss.backward()
                optimizer.step()

            def train_step(engine, batch):
                optimizer.zero_grad()
                loss = criterion(model(batch[0]), batch[1])
                backward_pass(engine, loss)
                return loss.item()

            return Engine(train_step)
        """,
    "trainer_chain_clearing_inside_train_step": """
        class Recipe:
            def forward_backward(self, batch):
                loss = self.model(batch).mean()
                loss.backward()
                return loss
            def train_step(self, batch):
                self.optimizers.zero_grad()
                loss = self.forward_backward(batch)
                self.optimizers.step()
                return loss
            def train(self, loader):
                for batch in loader:
                    self.train_step(batch)
        """,
    "optimizer_container_cleared_in_the_loop": """
        class Optimizers:
            def __init__(self, *opts):
                self.opts = opts

            def step(self):
                for o in self.opts:
                    o.step()

            def zero_grad(self):
                for o in self.opts:
                    o.zero_grad()

        opts = Optimizers(torch.optim.Adam(g.parameters()), torch.optim.Adam(h.parameters()))
        for x in loader:
            opts.zero_grad()
            loss = h(g(x)).mean()
            loss.backward()
            opts.step()
        """,
    "container_whose_step_clears": """
        class StepAndClear:
            def __init__(self, opt):
                self.opt = opt

            def step(self):
                self.opt.step()
                self.opt.zero_grad()

            def zero_grad(self):
                self.opt.zero_grad()

        wrapper = StepAndClear(torch.optim.SGD(model.parameters(), lr=0.1))
        for x, y in loader:
            criterion(model(x), y).backward()
            wrapper.step()
        """,
    "trainer_instance_whose_step_clears_first": """
        class Trainer:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

            def train_step(self, x, y):
                self.optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(self.model(x), y)
                loss.backward()
                self.optimizer.step()

        trainer = Trainer(net)
        for x, y in loader:
            trainer.train_step(x, y)
        """,
    "manual_sgd_zeroing_each_gradient": """
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
                    p.grad.zero_()
        """,
    "manual_sgd_setting_gradients_to_none": """
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p.data.add_(p.grad, alpha=-lr)
                    p.grad = None
        """,
    "manual_sgd_with_model_zero_grad_first": """
        for x, y in loader:
            model.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            for p in model.parameters():
                p.data.sub_(lr * p.grad.data)
        """,
    "old_tutorial_zeroing_through_grad_data": """
        for t in range(500):
            y_pred = x.mm(w1).clamp(min=0).mm(w2)
            loss = (y_pred - y).pow(2).sum()
            loss.backward()
            w1.data -= learning_rate * w1.grad.data
            w2.data -= learning_rate * w2.grad.data
            w1.grad.data.zero_()
            w2.grad.data.zero_()
        """,
    "maml_inner_loop_with_fast_weights": """
        for task_batch in meta_loader:
            meta_opt.zero_grad()
            for x_s, y_s, x_q, y_q in task_batch:
                fast = list(model.parameters())
                for _ in range(inner_steps):
                    inner_loss = F.cross_entropy(functional_forward(x_s, fast), y_s)
                    grads = torch.autograd.grad(inner_loss, fast, create_graph=True)
                    fast = [w - inner_lr * g for w, g in zip(fast, grads)]
                F.cross_entropy(functional_forward(x_q, fast), y_q).backward()
            meta_opt.step()
        """,
    "manual_update_from_autograd_grad_results": """
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            grads = torch.autograd.grad(loss, list(model.parameters()))
            with torch.no_grad():
                for p, g in zip(model.parameters(), grads):
                    p -= lr * g
        """,
    "reptile_outer_update_reads_no_gradient": """
        for iteration in range(n_iterations):
            weights_before = copy.deepcopy(model.state_dict())
            for x, y in task_batches():
                inner_opt.zero_grad()
                F.mse_loss(model(x), y).backward()
                inner_opt.step()
            weights_after = model.state_dict()
            model.load_state_dict({
                name: weights_before[name] + (weights_after[name] - weights_before[name]) * outer_lr
                for name in weights_before
            })
        """,
    "weight_decay_added_to_gradients_is_not_an_update": """
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            for p in model.parameters():
                p.grad.add_(p.data, alpha=weight_decay)
                p.grad += noise_std * torch.randn_like(p.grad)
            optimizer.step()
        """,
    "ema_and_polyak_target_updates": """
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
            with torch.no_grad():
                for ema_p, p in zip(ema_model.parameters(), model.parameters()):
                    ema_p.mul_(decay).add_(p, alpha=1 - decay)
                for tp, p in zip(target_net.parameters(), q_net.parameters()):
                    tp.data.copy_(tau * p.data + (1.0 - tau) * tp.data)
        """,
    "rebinding_a_new_tensor_is_not_an_in_place_update": """
        for step in range(n_steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            loss.backward()
            x_adv = x_adv - alpha * x_adv.grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).detach()
        """,
    "sam_two_step": """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.first_step(zero_grad=True)
            criterion(model(x), y).backward()
            optimizer.second_step(zero_grad=True)
        """,
    "accumulation_with_shifted_window_start": """
        for it, (x, y) in enumerate(loader, start=1):
            if (it - 1) % steps_per_update == 0:
                opt.zero_grad()
            (F.mse_loss(model(x), y) / steps_per_update).backward()
            if it % steps_per_update == 0:
                opt.step()
        """,
    "accumulation_with_literal_period": """
        for it, (x, y) in enumerate(loader, start=1):
            if it % 4 == 1:
                opt.zero_grad()
            (F.mse_loss(model(x), y) / 4).backward()
            if it % 4 == 0:
                opt.step()
        """,
    "accumulation_with_continue_until_the_window_ends": """
        for i, batch in enumerate(loader):
            loss = model(batch).loss / accum
            loss.backward()
            if (i + 1) % accum != 0:
                continue
            optimizer.step()
            optimizer.zero_grad()
        """,
    "accumulation_with_flags_that_line_up": """
        for step, batch in enumerate(loader):
            sync = (step + 1) % cfg.grad_accum == 0
            loss = model(**batch).loss / cfg.grad_accum
            scaler.scale(loss).backward()
            if sync:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
        """,
    "deepspeed_and_fabric": """
        for batch in loader:
            loss = engine(batch)
            engine.backward(loss)
            engine.step()
        for batch in loader:
            optimizer.zero_grad()
            fabric.backward(model(batch).loss)
            optimizer.step()
        """,
    "lbfgs_closure_clears_inside": """
        optimizer = torch.optim.LBFGS(model.parameters(), lr=1)
        for epoch in range(20):
            def closure():
                optimizer.zero_grad()
                loss = criterion(model(inputs), targets)
                loss.backward()
                return loss
            optimizer.step(closure)
        """,
    "ppo_minibatch_epochs": """
        for update in range(num_updates):
            rollout = collect(envs, agent)
            for epoch in range(update_epochs):
                for mb in rollout.minibatches(minibatch_size):
                    pg_loss, v_loss, entropy = agent.losses(mb)
                    loss = pg_loss - ent_coef * entropy + vf_coef * v_loss
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
                    optimizer.step()
        """,
    "gan_with_detached_fake_both_cleared": """
        for real in loader:
            fake = netG(torch.randn(real.size(0), nz, 1, 1))
            optD.zero_grad()
            errD = criterion(netD(real), ones) + criterion(netD(fake.detach()), zeros)
            errD.backward()
            optD.step()
            optG.zero_grad()
            errG = criterion(netD(fake), ones)
            errG.backward()
            optG.step()
        """,
}


@pytest.mark.parametrize("name", sorted(TRAINERS_FLAGGED))
def test_trainers_and_manual_updates_flagged(name):
    source = TRAINERS_FLAGGED[name]
    assert expected(source), "a flagged case must mark at least one line"
    assert reported(source) == expected(source)


@pytest.mark.parametrize("name", sorted(TRAINERS_CLEAN))
def test_trainers_and_manual_updates_clean(name):
    assert reported(TRAINERS_CLEAN[name]) == []


def _write_project(tmp_path, files: dict) -> None:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


UPDATE_HELPER = """
    def update(optimizer, loss):
        loss.backward()
        optimizer.step()
    """

LOOP_CALLING_UPDATE = """
    import torch
    import torch.nn.functional as F
    from {module} import update

    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        update(opt, F.mse_loss(model(x), y)){mark}
    """


@pytest.mark.parametrize("with_root", [True, False])
def test_helper_in_a_sibling_module_that_runs_backward_and_step(tmp_path, with_root):
    # A1: `python train.py` puts the script's folder on sys.path, so `helpers` is found next to it
    _write_project(tmp_path, {"helpers.py": UPDATE_HELPER})
    source = LOOP_CALLING_UPDATE.format(module="helpers", mark="  # GL001")
    options = AnalysisOptions(project_root=str(tmp_path) if with_root else None)
    assert reported(source, options, str(tmp_path / "train.py")) == expected(source)


def test_helper_in_a_package_module_that_runs_backward_and_step(tmp_path):
    _write_project(tmp_path, {"pkg/__init__.py": "", "pkg/train_utils.py": UPDATE_HELPER})
    source = LOOP_CALLING_UPDATE.format(module="pkg.train_utils", mark="  # GL001")
    (finding,) = findings(source, AnalysisOptions(project_root=str(tmp_path)), str(tmp_path / "scripts" / "train.py"))
    assert finding.line == 9
    assert "runs a backward and steps `opt`" in finding.message
    assert "call `opt.zero_grad()` before the call" in finding.message


def test_helper_in_another_module_that_clears_first_is_clean(tmp_path):
    _write_project(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/train_utils.py": """
                def update(optimizer, loss):
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                """,
        },
    )
    source = LOOP_CALLING_UPDATE.format(module="pkg.train_utils", mark="")
    assert reported(source, AnalysisOptions(project_root=str(tmp_path)), str(tmp_path / "train.py")) == []


def test_backward_helper_in_a_relative_module_with_the_step_in_the_loop(tmp_path):
    _write_project(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/losses.py": """
                import torch.nn.functional as F

                def backprop(model, batch):
                    loss = F.cross_entropy(model(batch["x"]), batch["y"])
                    loss.backward()
                    return loss.detach()
                """,
        },
    )
    source = """
        from .losses import backprop

        def train(model, loader, optimizer):
            optimizer.zero_grad()
            for batch in loader:
                backprop(model, batch)  # GL001
                optimizer.step()
        """
    path = str(tmp_path / "pkg" / "train.py")
    assert reported(source, AnalysisOptions(project_root=str(tmp_path)), path) == expected(source)


def test_hand_written_update_in_another_module(tmp_path):
    _write_project(
        tmp_path,
        {
            "optim_utils.py": """
                import torch

                @torch.no_grad()
                def sgd_step(params, lr):
                    for p in params:
                        p -= lr * p.grad
                """,
            "clearing_utils.py": """
                import torch

                @torch.no_grad()
                def sgd_step(params, lr):
                    for p in params:
                        p -= lr * p.grad
                        p.grad = None
                """,
        },
    )
    template = """
        from {module} import sgd_step

        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward(){mark}
            sgd_step(model.parameters(), 0.1)
        """
    options, path = AnalysisOptions(project_root=str(tmp_path)), str(tmp_path / "train.py")
    buggy = template.format(module="optim_utils", mark="  # GL001")
    assert reported(buggy, options, path) == expected(buggy)
    (finding,) = findings(buggy, options, path)
    assert "hand-written update in a helper" in finding.message
    assert reported(template.format(module="clearing_utils", mark=""), options, path) == []


def test_message_for_a_hand_written_update():
    (finding,) = findings(TRAINERS_FLAGGED["manual_sgd_under_no_grad"])
    assert finding.message == (
        "`loss.backward()` adds to gradients that the hand-written update `p -= lr * p.grad` (line 7) already "
        "applied: the parameters' gradients are never cleared between steps; clear them after the update "
        "(`p.grad = None`) or before the backward (`model.zero_grad()`)"
    )


def test_message_for_a_hand_written_update_of_one_tensor_names_that_tensor():
    # `model.zero_grad()` would not clear an adversarial perturbation or a tutorial's bare leaf
    (finding,) = findings(TRAINERS_FLAGGED["tutorial_linear_regression_data_update"])
    assert finding.message == (
        "`loss.backward()` adds to the gradient that the hand-written update `b.data -= 0.01 * b.grad` (line 11) "
        "already applied: `b.grad` is never cleared between steps; clear it after the update (`b.grad = None`)"
    )
    (finding,) = findings("""
        for x, y in loader:
            delta = torch.zeros_like(x, requires_grad=True)
            for _ in range(5):
                F.cross_entropy(model(x + delta), y).backward()
                delta.data = delta.data + alpha * delta.grad
        """)
    assert "`delta.grad` is never cleared" in finding.message and "zero_grad" not in finding.message


@pytest.mark.parametrize("update", [
    "[p.data.sub_(lr * p.grad) for p in model.parameters()]",
    "[p.data.sub_(lr * p.grad) for group in groups for p in group]",
    "for name, p in model.named_parameters(): p.data -= lr * p.grad",
])
def test_message_for_a_hand_written_update_over_parameters_suggests_the_module_clear(update):
    (finding,) = findings(f"""
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward()
            with torch.no_grad():
                {update}
        """)
    assert "the parameters' gradients are never cleared" in finding.message
    assert "(`model.zero_grad()`)" in finding.message


def test_message_for_gates_that_line_up_only_for_k_above_one_names_k():
    (finding,) = findings(TRAINERS_FLAGGED["gates_that_line_up_only_for_k_above_one"])
    assert "never cleared between steps when `steps_per_update == 1`" in finding.message
    assert "call `opt.zero_grad()` right after the step, under its gate" in finding.message
    (flagged,) = findings(TRAINERS_FLAGGED["gates_through_flags_that_line_up_only_for_k_above_one"])
    assert "`args.grad_accum == 1`" in flagged.message


def test_trainer_backward_is_reported_where_written_and_names_the_container():
    (finding,) = findings(TRAINERS_FLAGGED["trainer_chain_with_optimizer_container"])
    assert finding.message.startswith("`loss.backward()` adds to gradients that `self.optimizers.step()` (line 15)")


@pytest.mark.parametrize(
    "import_line, call",
    [
        ("import helpers", "helpers.update"),
        ("import pkg.train_utils as tu", "tu.update"),
        ("from pkg import train_utils", "train_utils.update"),
    ],
)
def test_helper_reached_through_a_module_import(tmp_path, import_line, call):
    _write_project(tmp_path, {"helpers.py": UPDATE_HELPER, "pkg/__init__.py": "", "pkg/train_utils.py": UPDATE_HELPER})
    source = f"""
        {import_line}

        for x, y in loader:
            {call}(optimizer, criterion(model(x), y))  # GL001
        """
    assert reported(source, AnalysisOptions(project_root=str(tmp_path)), str(tmp_path / "train.py")) == expected(source)


# ---------------------------------------------------------------------------------------------
# Issue 17: the fix inserts the missing clear
# ---------------------------------------------------------------------------------------------


def _apply(text: str, found) -> str:
    edits = sorted((e for f in found if f.fix is not None for e in f.fix.edits), key=lambda e: e.start, reverse=True)
    seen = set()
    for edit in edits:
        if (edit.start, edit.end, edit.text) in seen:
            continue
        seen.add((edit.start, edit.end, edit.text))
        text = text[: edit.start] + edit.text + text[edit.end :]
    return text


@pytest.mark.parametrize("name", sorted({**FLAGGED, **TRAINERS_FLAGGED}))
def test_fix_removes_the_finding_and_keeps_the_file_parsing(name):
    source = textwrap.dedent({**FLAGGED, **TRAINERS_FLAGGED}[name])
    found = lint_options(source, "train.py", AnalysisOptions(), codes=["GL001"])
    assert found and all(f.fix is not None for f in found), [f.message for f in found]
    fixed = _apply(source, found)
    assert fixed != source
    assert lint_options(fixed, "train.py", AnalysisOptions(), codes=["GL001"]) == []
    assert fixed.count("\n") == source.count("\n") + sum(len(f.fix.edits) for f in found[:1])


FIX_PLACES = [
    (  # unconditional step: right after it
        """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()  # apply
            scheduler.step()
        """,
        """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()  # apply
            optimizer.zero_grad()
            scheduler.step()
        """,
    ),
    (  # step gated on an accumulation period: after it, inside the gate (A4)
        """
        for it, (x, y) in enumerate(loader, start=1):
            if it % k == 1:
                opt.zero_grad()
            (F.mse_loss(model(x), y) / k).backward()
            if it % k == 0:
                opt.step()
        """,
        """
        for it, (x, y) in enumerate(loader, start=1):
            if it % k == 1:
                opt.zero_grad()
            (F.mse_loss(model(x), y) / k).backward()
            if it % k == 0:
                opt.step()
                opt.zero_grad()
        """,
    ),
    (  # step under another condition: before the backward, at the loop level
        """
        for x, y in loader:
            loss = criterion(model(x), y)
            with autocast():
                loss.backward()
            if torch.isfinite(loss):
                optimizer.step()
        """,
        """
        for x, y in loader:
            loss = criterion(model(x), y)
            with autocast():
                optimizer.zero_grad()
                loss.backward()
            if torch.isfinite(loss):
                optimizer.step()
        """,
    ),
    (  # GradScaler: the scaler steps the optimizer it is handed
        """
        for x in loader:
            scaler.scale(model(x).mean()).backward()
            scaler.step(opt_g)
            scaler.update()
        """,
        """
        for x in loader:
            scaler.scale(model(x).mean()).backward()
            scaler.step(opt_g)
            opt_g.zero_grad()
            scaler.update()
        """,
    ),
]


@pytest.mark.parametrize("source, wanted", FIX_PLACES)
def test_fix_places_the_clear(source, wanted):
    source, wanted = textwrap.dedent(source), textwrap.dedent(wanted)
    assert _apply(source, findings(source)) == wanted


def test_fix_keeps_crlf_line_endings_tabs_and_comments():
    source = "for x in loader:\r\n\t# forward\r\n\tmodel(x).sum().backward()\r\n\topt.step()  # go\r\n"
    fixed = _apply(source, lint_options(source, "train.py", AnalysisOptions(), codes=["GL001"]))
    assert fixed == source + "\topt.zero_grad()\r\n"
    at_end = "for x in loader:\n    model(x).sum().backward()\n    opt.step()"
    assert _apply(at_end, lint_options(at_end, "t.py", AnalysisOptions(), codes=["GL001"])).endswith(
        "    opt.step()\n    opt.zero_grad()"
    )


def test_helper_in_another_module_is_never_edited_the_call_site_is(tmp_path):
    _write_project(tmp_path, {"helpers.py": UPDATE_HELPER})
    source = textwrap.dedent(LOOP_CALLING_UPDATE.format(module="helpers", mark=""))
    options = AnalysisOptions(project_root=str(tmp_path))
    (finding,) = lint_options(source, str(tmp_path / "train.py"), options, codes=["GL001"])
    assert _apply(source, [finding]).endswith(
        "    update(opt, F.mse_loss(model(x), y))\n    opt.zero_grad()\n"
    )


def test_no_fix_where_no_single_place_is_right():
    # the step is not an optimizer we can name (a configured helper), or the update happens in
    # another module's helper, or two backwards feed a step gated on something else
    options = AnalysisOptions(backward_functions=("run_backward",), step_functions=("apply_gradients",))
    (configured,) = findings(
        """
        for batch in loader:
            run_backward(model(batch))
            apply_gradients(model)
        """,
        options,
    )
    assert configured.fix is None
    assert configured.message.endswith("(no automatic fix: no single place for the clear is right here)")
    two = findings(
        """
        for x, y in loader:
            criterion(model(x), y).backward()  # GL001
            if use_aux:
                aux(x).backward()  # GL001
            if healthy:
                optimizer.step()
        """
    )
    assert [f.line for f in two] == [3, 5]
    assert all(f.fix is None and f.message.endswith("is right here)") for f in two)


class _Recorder:
    """Stands in for a learning rate (`p -= lr * p.grad`) or wraps `step()`: records the gradients
    each update applies; applies nothing, so every batch's own gradient stays the same."""

    def __init__(self):
        self.applied = []

    def __rmul__(self, grad):
        import torch

        self.applied.append(grad.detach().clone())
        return torch.zeros_like(grad)

    __mul__ = __rmul__


def _training_namespace(batches=6):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(batches)]
    recorder = _Recorder()

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            recorder.applied.append(model.weight.grad.detach().clone())
            return None  # lr 0 in effect: the parameters never move

    def batch_grad(x, y):
        model.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        grad = model.weight.grad.detach().clone()
        model.zero_grad()
        return grad

    expected = [batch_grad(x, y) for x, y in data]
    namespace = {"torch": torch, "F": torch.nn.functional, "model": model, "loader": data, "lr": recorder}
    namespace["opt"] = RecordingSGD(model.parameters(), lr=0.0)
    return namespace, recorder, expected


def _fixed(source: str, path: str = "train.py", options: Optional[AnalysisOptions] = None) -> str:
    source = textwrap.dedent(source)
    options = options or AnalysisOptions()
    found = lint_options(source, path, options, codes=["GL001"])
    assert found and all(f.fix is not None for f in found)
    fixed = _apply(source, found)
    assert lint_options(fixed, path, options, codes=["GL001"]) == []
    return fixed


def test_fixed_script_runs_and_each_step_applies_one_batch():
    import torch

    fixed = _fixed(
        """
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
        """
    )
    namespace, recorder, expected = _training_namespace()
    exec(compile(fixed, "train.py", "exec"), namespace)
    assert len(recorder.applied) == len(expected)
    for applied, own in zip(recorder.applied, expected):
        assert torch.allclose(applied, own)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_fixed_mismatched_gates_train_with_and_without_accumulation(k):
    import torch

    fixed = _fixed(TRAINERS_FLAGGED["gates_that_line_up_only_for_k_above_one"])
    namespace, recorder, expected = _training_namespace()
    namespace["steps_per_update"] = k
    exec(compile(fixed, "train.py", "exec"), namespace)
    windows = [expected[i : i + k] for i in range(0, len(expected), k)]
    assert len(recorder.applied) == len(windows)
    for applied, window in zip(recorder.applied, windows):
        assert torch.allclose(applied, sum(window) / k, atol=1e-6)  # the window's batches only


def test_fixed_manual_sgd_applies_one_batch_per_update():
    import torch

    fixed = _fixed(TRAINERS_FLAGGED["manual_sgd_under_no_grad"])
    namespace, recorder, expected = _training_namespace()
    exec(compile(fixed, "train.py", "exec"), namespace)
    weights = recorder.applied[0::2]  # weight, bias, weight, bias, ...
    assert len(weights) == len(expected)
    for applied, own in zip(weights, expected):
        assert torch.allclose(applied, own)


def test_fixed_call_site_of_a_helper_in_another_module_runs(tmp_path, monkeypatch):
    import torch

    _write_project(tmp_path, {"helpers.py": UPDATE_HELPER})
    source = """
        from helpers import update

        for x, y in loader:
            update(opt, F.mse_loss(model(x), y))
        """
    fixed = _fixed(source, str(tmp_path / "train.py"), AnalysisOptions(project_root=str(tmp_path)))
    assert (tmp_path / "helpers.py").read_text() == textwrap.dedent(UPDATE_HELPER)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace, recorder, expected = _training_namespace()
    try:
        exec(compile(fixed, str(tmp_path / "train.py"), "exec"), namespace)
    finally:
        sys.modules.pop("helpers", None)  # this test's own module, not to be seen by others
    assert len(recorder.applied) == len(expected)
    for applied, own in zip(recorder.applied, expected):
        assert torch.allclose(applied, own)


TRAINER_MODULE = """
    import torch

    class Trainer:
        def __init__(self, model, lr):
            self.model = model
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

        def train_step(self, batch):
            {clear}loss = self.model(**batch).loss
            loss.backward()
            self.optimizer.step()
            return loss.item()
    """


@pytest.mark.parametrize("clear", ["", "self.optimizer.zero_grad()\n            "])
def test_trainer_class_of_another_module_used_in_a_script_loop(tmp_path, clear):
    _write_project(tmp_path, {"lib/__init__.py": "", "lib/trainer.py": TRAINER_MODULE.format(clear=clear)})
    mark = "" if clear else "  # GL001"
    source = f"""
        from lib.trainer import Trainer

        trainer = Trainer(model, lr=3e-4)
        for epoch in range(epochs):
            for batch in loader:
                trainer.train_step(batch){mark}
        """
    options = AnalysisOptions(project_root=str(tmp_path))
    assert reported(source, options, str(tmp_path / "train.py")) == expected(source)
    if not clear:  # the fix goes into the loop, never into lib/trainer.py
        (finding,) = findings(source, options, str(tmp_path / "train.py"))
        assert finding.fix is not None and finding.fix.edits[0].text == "        trainer.optimizer.zero_grad()\n"


def test_method_inherited_from_a_base_class_of_another_module(tmp_path):
    _write_project(tmp_path, {"base.py": TRAINER_MODULE.format(clear="")})
    source = """
        from base import Trainer

        class ClassifierTrainer(Trainer):
            def fit(self, loader):
                self.optimizer.zero_grad()
                for batch in loader:
                    self.train_step(batch)  # GL001
        """
    assert reported(source, AnalysisOptions(project_root=str(tmp_path)), str(tmp_path / "train.py")) == expected(source)


PROJECT_OPTIMIZERS = """
    from torch.optim import SGD

    class AnalogOptimizerMixin:
        def regroup_param_groups(self, model):
            pass

    class AnalogSGD(AnalogOptimizerMixin, SGD):
        pass

    class StepAndClearSGD(SGD):
        def step(self, closure=None):
            super().step(closure)
            self.zero_grad()

    class Warmup:
        def __init__(self, optimizer):
            self.optimizer = optimizer

        def step(self):
            self.optimizer.step()

    class WarmupThatClears(Warmup):
        def step(self):
            self.optimizer.step()
            self.optimizer.zero_grad()

    class InheritsTheClear(StepAndClearSGD):
        pass

    class StepsThroughSuper(StepAndClearSGD):
        def step(self, closure=None):
            return super().step(closure)

    class BypassesTheClear(StepAndClearSGD):
        def step(self, closure=None):
            return SGD.step(self, closure)
    """


@pytest.mark.parametrize(
    "cls, mark",
    [
        ("AnalogSGD", "  # GL001"),
        ("StepAndClearSGD", ""),
        ("Warmup", "  # GL001"),
        ("WarmupThatClears", ""),
        ("InheritsTheClear", ""),
        ("StepsThroughSuper", ""),
        ("BypassesTheClear", "  # GL001"),
    ],
)
def test_optimizer_subclass_defined_in_another_project_module(tmp_path, cls, mark):
    _write_project(tmp_path, {"src/hwlib/__init__.py": "", "src/hwlib/optim.py": PROJECT_OPTIMIZERS})
    source = f"""
        from hwlib.optim import {cls}

        opt = {cls}(model.parameters(), lr=0.1)
        for epoch in range(100):
            loss = mse_loss(model(x), y)
            loss.backward(){mark}
            opt.step()
        """
    path = str(tmp_path / "examples" / "simple.py")
    assert reported(source, AnalysisOptions(project_root=str(tmp_path)), path) == expected(source)


# Optimizer classes of the script itself whose step() clears (or does not): the loop relies on it.
SELF_CLEARING_OPTIMIZERS = {
    "clears_after_super_step": ("""
        class AutoClearAdam(torch.optim.Adam):
            @torch.no_grad()
            def step(self, closure=None):
                loss = super().step(closure)
                self.zero_grad(set_to_none=True)
                return loss
        """, "AutoClearAdam", ""),
    "clears_before_super_step": ("""
        class AutoClearAdam(torch.optim.Adam):
            def step(self, closure=None):
                self.zero_grad()
                return super().step(closure)
        """, "AutoClearAdam", ""),
    "clears_through_the_grads": ("""
        class WipingSGD(torch.optim.SGD):
            def step(self, closure=None):
                super().step(closure)
                for group in self.param_groups:
                    for p in group["params"]:
                        p.grad = None
        """, "WipingSGD", ""),
    "subclass_of_a_clearing_subclass": ("""
        class AutoClearAdam(torch.optim.Adam):
            def step(self, closure=None):
                loss = super().step(closure)
                self.zero_grad(set_to_none=True)
                return loss

        class WarmAdam(AutoClearAdam):
            pass
        """, "WarmAdam", ""),
    "override_that_steps_through_super": ("""
        class AutoClearAdam(torch.optim.Adam):
            def step(self, closure=None):
                loss = super().step(closure)
                self.zero_grad()
                return loss

        class Logged:
            def log(self):
                pass

        class LoggedAdam(Logged, AutoClearAdam):
            def step(self, closure=None):
                self.log()
                return super(LoggedAdam, self).step(closure)
        """, "LoggedAdam", ""),
    "override_that_names_the_base": ("""
        class AutoClearAdam(torch.optim.Adam):
            def step(self, closure=None):
                loss = super().step(closure)
                self.zero_grad()
                return loss

        class LoggedAdam(AutoClearAdam):
            def step(self, closure=None):
                return AutoClearAdam.step(self, closure)
        """, "LoggedAdam", ""),
    "step_that_does_not_clear": ("""
        class CountingAdam(torch.optim.Adam):
            def step(self, closure=None):
                loss = super().step(closure)
                self.steps = getattr(self, "steps", 0) + 1
                return loss
        """, "CountingAdam", "  # GL001"),
    "plain_subclass": ("""
        class MyAdam(torch.optim.Adam):
            pass
        """, "MyAdam", "  # GL001"),
    "override_that_skips_the_clearing_base": ("""
        class AutoClearAdam(torch.optim.Adam):
            def step(self, closure=None):
                loss = super().step(closure)
                self.zero_grad()
                return loss

        class RawAdam(AutoClearAdam):
            def step(self, closure=None):
                return torch.optim.Adam.step(self, closure)
        """, "RawAdam", "  # GL001"),
}


@pytest.mark.parametrize("name", sorted(SELF_CLEARING_OPTIMIZERS))
def test_optimizer_subclass_of_the_script_that_clears_in_its_step(name):
    classes, cls, mark = SELF_CLEARING_OPTIMIZERS[name]
    source = f"""
        import torch
        from torch import nn
        {textwrap.indent(textwrap.dedent(classes), " " * 8).strip()}

        model = nn.Linear(4, 2)
        opt = {cls}(model.parameters(), lr=1e-3)
        for i in range(6):
            x, y = torch.randn(5, 4), torch.randint(0, 2, (5,))
            nn.functional.cross_entropy(model(x), y).backward(){mark}
            opt.step()
        """
    assert reported(source) == expected(source)


@pytest.mark.parametrize("clears, mark", [(True, ""), (False, "  # GL001")])
def test_trainer_attribute_holding_a_clearing_optimizer_subclass(clears, mark):
    source = f"""
        import torch
        from torch import nn

        class AutoClearSGD(torch.optim.SGD):
            def step(self, closure=None):
                {"self.zero_grad()" if clears else "pass"}
                return super().step(closure)

        class Trainer:
            def __init__(self, model):
                self.model = model
                self.optimizer = AutoClearSGD(model.parameters(), lr=0.1)

            def train(self, loader):
                for x, y in loader:
                    loss = nn.functional.mse_loss(self.model(x), y)
                    loss.backward(){mark}
                    self.optimizer.step()
        """
    assert reported(source) == expected(source)


def test_step_method_of_a_project_class_instance_is_followed(tmp_path):
    _write_project(
        tmp_path,
        {
            "lib/__init__.py": "from lib.gan import GAN\n",
            "lib/gan.py": """
                class GAN:
                    def step(self, batch):
                        loss = self.model(batch).mean()
                        loss.backward()
                        self.model.optimizer.step()
                        return loss.item()
                """,
        },
    )
    source = """
        from lib import GAN

        gan = GAN(latent_dims=100)
        for epoch in range(epochs):
            for i, data in enumerate(loader):
                errD = gan.step(data)  # GL001
        """
    assert reported(source, AnalysisOptions(project_root=str(tmp_path)), str(tmp_path / "main.py")) == expected(source)


SAM_MODULE = """
    import torch

    class SAM(torch.optim.Optimizer):
        def __init__(self, params, base_optimizer, rho=0.05, **kwargs):
            super().__init__(params, dict(rho=rho, **kwargs))
            self.base_optimizer = base_optimizer(self.param_groups, **kwargs)

        @torch.no_grad()
        def first_step(self, zero_grad=False):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    e_w = p.grad * group["rho"]
                    p.add_(e_w)
                    self.state[p]["e_w"] = e_w
            if zero_grad:
                self.zero_grad()

        @torch.no_grad()
        def second_step(self, zero_grad=False):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    p.sub_(self.state[p]["e_w"])
            self.base_optimizer.step()
            if zero_grad:
                self.zero_grad()
    """


@pytest.mark.parametrize("flag, mark", [("zero_grad=True", ""), ("zero_grad=False", "  # GL001")])
def test_sam_from_the_project_clears_when_asked(tmp_path, flag, mark):
    _write_project(tmp_path, {"sam.py": SAM_MODULE})
    source = f"""
        import torch
        from sam import SAM

        optimizer = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward(){mark}
            optimizer.first_step({flag})
            criterion(model(inputs), targets).backward(){mark}
            optimizer.second_step({flag})
        """
    assert reported(source, AnalysisOptions(project_root=str(tmp_path)), str(tmp_path / "train.py")) == expected(source)


def test_each_helper_backward_is_reported_under_gates_that_line_up_only_for_k_above_one():
    # two helpers each run a backward; the stale path shows only with k == 1: both calls are
    # reported, not just the last one (the period search once overwrote the report's key)
    source = """
        def generator_backward(x):
            generator_loss(x).backward()

        def discriminator_backward(x):
            discriminator_loss(x).backward()

        for it, x in enumerate(loader, start=1):
            if it % k == 1:
                opt.zero_grad()
            generator_backward(x)  # GL001
            discriminator_backward(x)  # GL001
            if it % k == 0:
                opt.step()
        """
    assert reported(source) == expected(source)
    assert all("when `k == 1`" in finding.message for finding in findings(source))


def test_project_optimizer_subclass_cleared_beside_a_torch_optimizer(tmp_path):
    """`opt` is built by a torch optimizer subclass of the project: its `zero_grad()` clears it,
    even though the file's only optimizer with known parameter sources is another one."""
    (tmp_path / "analog.py").write_text(textwrap.dedent("""
        import torch


        class AnalogSGD(torch.optim.SGD):
            def regroup_param_groups(self, model):
                pass
    """))
    source = """
        import torch
        from analog import AnalogSGD

        model, reference = torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)
        opt = AnalogSGD(model.parameters(), lr=0.1)
        opt_ref = torch.optim.SGD(reference.parameters(), lr=0.1)
        for _ in range(100):
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            opt.step()
    """
    path = str(tmp_path / "train.py")
    assert reported(source, AnalysisOptions(project_root=str(tmp_path)), path) == []
