"""GL001 missing-zero-grad on realistic training code.

Each case is a whole script or function as people write them. A line that must be reported ends with
the marker `# GL001`; every other line must not be. The tests compare the exact (code, line) pairs.
"""

from __future__ import annotations

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
}


CLEAN = {
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


def test_many_branches_stay_fast():
    import time

    branches = "".join(f"    if flag{k}:\n        log({k})\n    if flag{k}:\n        count({k})\n" for k in range(30))
    source = (
        "for batch in loader:\n    loss = model(batch)\n    loss.backward()\n" + branches + "    optimizer.step()\n"
    )
    start = time.perf_counter()
    assert [f.line for f in lint_options(source, "train.py", codes=["GL001"])] == [3]
    assert time.perf_counter() - start < 5.0


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
