"""GL004 clip-grad-misuse on realistic training code.

Each case is a whole script, function or class as people write them. A line that must be reported
ends with the marker `# GL004`; every other line must not be. The tests compare the exact
(code, line) pairs, then check the messages and the unsafe fix.
"""

from __future__ import annotations

import textwrap
from typing import Optional

import libcst as cst
import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options

MARK = "# GL004"


def findings(source: str, options: Optional[AnalysisOptions] = None, path: str = "train.py"):
    return lint_options(textwrap.dedent(source), path, options, codes=["GL004"])


def expected(source: str):
    return [
        ("GL004", n) for n, line in enumerate(textwrap.dedent(source).splitlines(), 1) if line.rstrip().endswith(MARK)
    ]


def reported(source: str, options: Optional[AnalysisOptions] = None, path: str = "train.py"):
    return [(f.code, f.line) for f in findings(source, options, path)]


FLAGGED = {
    "amp_clip_before_unscale": """
        import torch
        from torch.cuda.amp import GradScaler, autocast

        model = build_model().cuda()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
        scaler = GradScaler()
        for epoch in range(args.epochs):
            for images, targets in train_loader:
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = criterion(model(images.cuda()), targets.cuda())
                scaler.scale(loss).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_norm)  # GL004
                scaler.step(optimizer)
                scaler.update()
        """,
    "amp_trainer_method_if_use_amp": """
        import torch

        class Trainer:
            def __init__(self, model, config):
                self.model = model
                self.config = config
                self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
                self.scaler = torch.amp.GradScaler("cuda")

            def _run_batch(self, source, targets):
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.config.use_amp):
                    _, loss = self.model(source, targets)
                self.optimizer.zero_grad(set_to_none=True)
                if self.config.use_amp:
                    self.scaler.scale(loss).backward()
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_norm_clip)  # GL004
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_norm_clip)
                    self.optimizer.step()
                return loss.item()

            def train(self, loader):
                for source, targets in loader:
                    self._run_batch(source, targets)
        """,
    "amp_clip_value_from_import": """
        import torch
        from torch.nn.utils import clip_grad_value_

        scaler = torch.cuda.amp.GradScaler()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        for batch in loader:
            opt.zero_grad()
            with torch.cuda.amp.autocast():
                out = net(batch["x"])
                loss = loss_fn(out, batch["y"])
            scaler.scale(loss).backward()
            clip_grad_value_(net.parameters(), clip_value=0.5)  # GL004
            scaler.step(opt)
            scaler.update()
        """,
    "amp_nn_utils_alias_and_enabled_flag": """
        import torch
        import torch.nn as nn

        def train_epoch(model, loader, optimizer, args):
            scaler = torch.cuda.amp.GradScaler(enabled=args.fp16)
            model.train()
            for step, (x, y) in enumerate(loader):
                with torch.cuda.amp.autocast(enabled=args.fp16):
                    loss = model(x, labels=y).loss
                optimizer.zero_grad()
                scaler.scale(loss).backward()
                total_norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # GL004
                scaler.step(optimizer)
                scaler.update()
                log({"loss": loss.item(), "grad_norm": total_norm.item()})
        """,
    "amp_accumulation_clip_every_micro_batch": """
        import torch

        scaler = torch.cuda.amp.GradScaler()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for i, (x, y) in enumerate(loader):
            with torch.autocast("cuda", dtype=torch.float16):
                loss = criterion(model(x), y) / accum_steps
            scaler.scale(loss).backward()
            if (i + 1) % accum_steps == 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)  # GL004
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad()
        """,
    "amp_unscale_after_clip": """
        import torch

        scaler = torch.cuda.amp.GradScaler()
        for x, y in loader:
            optimizer.zero_grad()
            with torch.cuda.amp.autocast():
                loss = model(x, y)
            scaler.scale(loss).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)  # GL004
            scaler.unscale_(optimizer)
            scaler.step(optimizer)
            scaler.update()
        """,
    "amp_unscale_only_when_logging": """
        import torch

        scaler = torch.cuda.amp.GradScaler()
        optimizer = torch.optim.Adam(model.parameters())
        for it, batch in enumerate(loader):
            optimizer.zero_grad()
            with torch.cuda.amp.autocast():
                loss = model(**batch).loss
            scaler.scale(loss).backward()
            if it % args.log_every == 0:
                scaler.unscale_(optimizer)
                log_grad_histograms(model)
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)  # GL004
            scaler.step(optimizer)
            scaler.update()
        """,
    "fsdp_module_clip_with_sharded_scaler": """
        import torch
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        model = FSDP(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
        scaler = ShardedGradScaler()
        for batch in loader:
            with torch.autocast("cuda", dtype=torch.float16):
                loss = model(**batch).loss
            scaler.scale(loss).backward()
            model.clip_grad_norm_(args.max_grad_norm)  # GL004
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
        """,
    "amp_scaled_backward_in_helper": """
        import torch

        class AmpTrainer:
            def __init__(self, model, lr):
                self.model = model
                self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
                self.scaler = torch.cuda.amp.GradScaler()

            def backward(self, loss):
                self.scaler.scale(loss).backward()

            def fit(self, loader):
                for batch in loader:
                    self.optimizer.zero_grad()
                    with torch.cuda.amp.autocast():
                        loss = self.model(batch)
                    self.backward(loss)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)  # GL004
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
        """,
    "amp_scaled_loss_in_a_variable_and_aliased_clip": """
        import torch
        from torch.nn.utils import clip_grad_norm_ as clip

        scaler = torch.amp.GradScaler("cuda")
        for x, y in loader:
            optimizer.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = model(x, y)
            scaled = scaler.scale(loss)
            scaled.backward()
            clip(model.parameters(), max_norm=1.0)  # GL004
            scaler.step(optimizer)
            scaler.update()
        """,
    "clip_after_step": """
        import torch

        model = Net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(10):
            for data, target in train_loader:
                optimizer.zero_grad()
                output = model(data)
                loss = F.nll_loss(output, target)
                loss.backward()
                optimizer.step()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)  # GL004
        """,
    "clip_before_backward": """
        import torch
        from torch import nn

        def train(model, loader, optimizer, clip=1.0):
            model.train()
            for src, trg in loader:
                optimizer.zero_grad()
                output = model(src, trg)
                loss = criterion(output.view(-1, output.shape[-1]), trg.view(-1))
                nn.utils.clip_grad_norm_(model.parameters(), clip)  # GL004
                loss.backward()
                optimizer.step()
        """,
    "clip_between_zero_grad_and_forward": """
        import torch

        optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4)
        for update in range(num_updates):
            rollouts = collect(env, policy)
            for epoch in range(ppo_epochs):
                for mb in rollouts.minibatches(batch_size):
                    optimizer.zero_grad()
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)  # GL004
                    loss = ppo_loss(policy, mb)
                    loss.backward()
                    optimizer.step()
        """,
    "amp_clip_after_scaler_step": """
        import torch as th
        from torch import nn

        scalar = th.cuda.amp.GradScaler()
        for epoch in range(epochs):
            for image, ref, box in loader:
                with th.cuda.amp.autocast():
                    loss = student(image, ref, det_label=box)
                optimizer.zero_grad()
                scalar.scale(loss).backward()
                scalar.step(optimizer)
                if cfg.GRAD_NORM_CLIP > 0:
                    nn.utils.clip_grad_norm_(student.parameters(), cfg.GRAD_NORM_CLIP)  # GL004
                scalar.update()
        """,
    "gan_clip_after_generator_step": """
        import torch

        opt_d = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_g = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        for real, _ in loader:
            opt_d.zero_grad()
            fake = netG(torch.randn(real.size(0), nz, 1, 1))
            d_loss = bce(netD(real), ones) + bce(netD(fake.detach()), zeros)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(netD.parameters(), 1.0)
            opt_d.step()
            opt_g.zero_grad()
            g_loss = bce(netD(fake), ones)
            g_loss.backward()
            opt_g.step()
            torch.nn.utils.clip_grad_norm_(netG.parameters(), 1.0)  # GL004
        """,
    "lightning_manual_clip_after_step": """
        import lightning as L
        import torch

        class GAN(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False
                self.net = Net()

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                opt.zero_grad()
                loss = self.net(batch).mean()
                self.manual_backward(loss)
                opt.step()
                self.clip_gradients(opt, gradient_clip_val=0.5, gradient_clip_algorithm="norm")  # GL004

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-3)
        """,
    "accelerate_clip_after_step": """
        from accelerate import Accelerator
        import torch

        accelerator = Accelerator(mixed_precision="fp16")
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        for batch in loader:
            outputs = model(**batch)
            accelerator.backward(outputs.loss)
            optimizer.step()
            accelerator.clip_grad_norm_(model.parameters(), 1.0)  # GL004
            optimizer.zero_grad()
        """,
    "rnn_language_model_clip_in_helper_after_step": """
        import torch
        import torch.nn as nn

        def clip(model, value):
            nn.utils.clip_grad_norm_(model.parameters(), value)

        def train(model, corpus, optimizer, args):
            hidden = model.init_hidden(args.batch_size)
            for batch, i in enumerate(range(0, corpus.size(0) - 1, args.bptt)):
                data, targets = get_batch(corpus, i)
                hidden = repackage_hidden(hidden)
                optimizer.zero_grad()
                output, hidden = model(data, hidden)
                loss = criterion(output, targets)
                loss.backward()
                optimizer.step()
                clip(model, args.clip)  # GL004
        """,
    "unscale_guarded_by_another_flag_than_the_scalers": """
        import torch

        scaler = torch.amp.GradScaler("cuda", enabled=args.amp)
        for batch in loader:
            optimizer.zero_grad()
            with torch.autocast("cuda", enabled=args.amp):
                loss = model(batch).mean()
            scaler.scale(loss).backward()
            if args.log_norms:  # not the scaler's flag: with amp on and this off, the clip sees scaled grads
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # GL004
            scaler.step(optimizer)
            scaler.update()
        """,
    "unscale_under_another_condition_beside_the_scaler_test": """
        import torch

        scaler = torch.amp.GradScaler("cuda")
        for step, batch in enumerate(loader):
            optimizer.zero_grad()
            scaler.scale(model(batch).mean()).backward()
            if scaler is not None and step > warmup:  # before warmup ends the clip sees scaled gradients
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # GL004
            scaler.step(optimizer)
            scaler.update()
        """,
    "unscale_only_when_the_scaler_is_off": """
        import torch

        scaler = torch.amp.GradScaler("cuda")
        for batch in loader:
            optimizer.zero_grad()
            scaler.scale(model(batch).mean()).backward()
            if not scaler.is_enabled():  # backwards: unscales exactly when there is nothing to unscale
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # GL004
            scaler.step(optimizer)
            scaler.update()
        """,
}


CLEAN = {
    "helper_unscales_when_a_scaler_is_given_and_enabled": """
        import torch

        def prepare_for_clipping(scaler, optimizer):
            if scaler is not None and scaler.is_enabled():
                scaler.unscale_(optimizer)

        scaler = torch.amp.GradScaler("cuda")
        for x, y in loader:
            optimizer.zero_grad()
            scaler.scale(criterion(model(x), y)).backward()
            prepare_for_clipping(scaler, optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        """,
    "unscale_when_there_is_a_scaler": """
        import torch

        def train_step(model, batch, optimizer, scaler=None):
            optimizer.zero_grad()
            loss = model(batch).mean()
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
            if scaler is None or not scaler.is_enabled():
                pass  # nothing was scaled
            else:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()

        scaler = torch.amp.GradScaler("cuda")
        for batch in loader:
            train_step(model, batch, optimizer, scaler)
        """,
    "unscale_when_the_scaler_is_enabled": """
        import torch

        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        for step, (images, labels) in enumerate(loader):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                loss = criterion(model(images), labels)
            scaler.scale(loss).backward()
            if scaler.is_enabled():
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            scaler.step(optimizer)
            scaler.update()
        """,
    "unscale_under_the_flag_the_scaler_was_built_with": """
        import torch

        scaler = torch.cuda.amp.GradScaler(enabled=args.fp16)
        for batch in loader:
            optimizer.zero_grad()
            with torch.cuda.amp.autocast(enabled=args.fp16):
                loss = model(**batch).loss
            scaler.scale(loss).backward()
            if args.fp16:
                scaler.unscale_(optimizer)
            else:
                pass  # full precision: the gradients are as the backward left them
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        """,
    "trainer_unscales_under_a_copy_of_the_flag": """
        import torch
        from torch import nn

        class AmpTrainer:
            def __init__(self, model, use_amp):
                self.use_amp = use_amp
                self.model = model
                self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
                self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

            def step(self, x, y):
                self.optimizer.zero_grad()
                with torch.autocast("cuda", enabled=self.use_amp):
                    loss = nn.functional.cross_entropy(self.model(x), y)
                self.scaler.scale(loss).backward()
                if not self.use_amp:
                    pass
                else:
                    self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.scaler.step(self.optimizer)
                self.scaler.update()

            def fit(self, loader):
                for x, y in loader:
                    self.step(x, y)
        """,
    "amp_unscale_first": """
        import torch

        scaler = torch.cuda.amp.GradScaler()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16):
                loss = criterion(model(x), y)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        """,
    "nanogpt_style_enabled_expression_unscale_under_flag": """
        import torch

        scaler = torch.cuda.amp.GradScaler(enabled=(dtype == "float16"))
        while True:
            for micro_step in range(gradient_accumulation_steps):
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
    "unscale_and_clip_in_helper": """
        import torch

        class Trainer:
            def __init__(self, model, max_norm):
                self.model = model
                self.max_norm = max_norm
                self.optimizer = torch.optim.AdamW(model.parameters())
                self.scaler = torch.cuda.amp.GradScaler()

            def unscale_and_clip(self):
                self.scaler.unscale_(self.optimizer)
                return torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_norm)

            def train_epoch(self, loader):
                for batch in loader:
                    self.optimizer.zero_grad()
                    with torch.cuda.amp.autocast():
                        loss = self.model(batch)
                    self.scaler.scale(loss).backward()
                    norm = self.unscale_and_clip()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
        """,
    "unscale_in_helper_then_clip": """
        import torch

        def unscale(scaler, optimizer):
            scaler.unscale_(optimizer)

        def run(model, loader, optimizer, scaler):
            for x, y in loader:
                optimizer.zero_grad()
                with torch.cuda.amp.autocast():
                    loss = model(x, y)
                scaler.scale(loss).backward()
                unscale(scaler, optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
        """,
    "bf16_no_scaler": """
        import torch

        optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=True)
        for step in range(max_steps):
            x, y = train_loader.next_batch()
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                logits, loss = model(x, y)
            optimizer.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            print(f"step {step} | loss {loss.item():.4f} | norm {norm:.4f}")
        """,
    "scaler_disabled_literal": """
        import torch

        scaler = torch.cuda.amp.GradScaler(enabled=False)
        for x, y in loader:
            optimizer.zero_grad()
            loss = model(x, y)
            scaler.scale(loss).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        """,
    "scaler_disabled_through_a_false_constant": """
        import torch

        USE_AMP = False
        scaler = torch.cuda.amp.GradScaler(enabled=USE_AMP)
        for x, y in loader:
            optimizer.zero_grad()
            with torch.autocast("cuda", enabled=USE_AMP):
                loss = model(x, y)
            scaler.scale(loss).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        """,
    "accelerate_clip_grad_norm": """
        from accelerate import Accelerator

        accelerator = Accelerator(mixed_precision="fp16", gradient_accumulation_steps=4)
        model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            model, optimizer, train_dataloader, lr_scheduler
        )
        for epoch in range(num_epochs):
            for batch in train_dataloader:
                with accelerator.accumulate(model):
                    outputs = model(**batch)
                    accelerator.backward(outputs.loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad()
        """,
    "lightning_manual_clip_gradients": """
        import pytorch_lightning as pl
        import torch

        class Model(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False
                self.layer = torch.nn.Linear(32, 2)

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                opt.zero_grad()
                loss = self.layer(batch).sum()
                self.manual_backward(loss)
                self.clip_gradients(opt, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
                opt.step()

            def configure_optimizers(self):
                return torch.optim.SGD(self.layer.parameters(), lr=0.1)
        """,
    "lightning_automatic_configure_gradient_clipping": """
        import lightning as L
        import torch

        class LitModel(L.LightningModule):
            def training_step(self, batch, batch_idx):
                x, y = batch
                return torch.nn.functional.cross_entropy(self(x), y)

            def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
                self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val,
                                    gradient_clip_algorithm=gradient_clip_algorithm)
        """,
    "deepspeed_engine": """
        import deepspeed
        import torch

        model_engine, optimizer, _, _ = deepspeed.initialize(args=args, model=model,
                                                             model_parameters=model.parameters())
        for step, batch in enumerate(data_loader):
            loss = model_engine(batch)
            model_engine.backward(loss)
            torch.nn.utils.clip_grad_norm_(model_engine.parameters(), 1.0)
            model_engine.step()
        """,
    "apex_scale_loss_block": """
        import torch
        from apex import amp

        model, optimizer = amp.initialize(model, optimizer, opt_level="O1")
        for images, target in train_loader:
            output = model(images)
            loss = criterion(output, target)
            optimizer.zero_grad()
            with amp.scale_loss(loss, optimizer) as scaled_loss:
                scaled_loss.backward()
            torch.nn.utils.clip_grad_norm_(amp.master_params(optimizer), args.clip_grad)
            optimizer.step()
        """,
    "inf_norm_only_logged_before_unscale": """
        import math
        import torch

        scaler = torch.cuda.amp.GradScaler()
        for x, y in loader:
            optimizer.zero_grad()
            with torch.cuda.amp.autocast():
                loss = model(x, y)
            scaler.scale(loss).backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
            writer.add_scalar("grad_norm_scaled", grad_norm)
            scaler.step(optimizer)
            scaler.update()
            after = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=math.inf)
        """,
    "gan_clip_each_network_before_its_step": """
        import torch

        for i, (real, _) in enumerate(dataloader):
            optimizer_D.zero_grad()
            d_loss = adversarial_loss(discriminator(real), valid) + adversarial_loss(discriminator(gen.detach()), fake)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(discriminator.parameters(), 10.0)
            optimizer_D.step()
            if i % n_critic == 0:
                optimizer_G.zero_grad()
                gen = generator(z)
                g_loss = -torch.mean(discriminator(gen))
                g_loss.backward()
                torch.nn.utils.clip_grad_norm_(generator.parameters(), 10.0)
                optimizer_G.step()
        """,
    "accumulation_clip_inside_gate": """
        import torch

        for step, batch in enumerate(train_dataloader):
            outputs = model(**batch)
            loss = outputs.loss / args.gradient_accumulation_steps
            loss.backward()
            if (step + 1) % args.gradient_accumulation_steps == 0 or step == len(train_dataloader) - 1:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
        """,
    "amp_when_enabled_else_plain": """
        import torch

        def train_one_epoch(model, criterion, data_loader, optimizer, device, scaler=None, clip_grad_norm=None):
            for image, target in data_loader:
                with torch.cuda.amp.autocast(enabled=scaler is not None):
                    output = model(image.to(device))
                    loss = criterion(output, target.to(device))
                optimizer.zero_grad()
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if clip_grad_norm is not None:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    if clip_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                    optimizer.step()
        """,
    "ppo_clip_between_backward_and_step": """
        import torch.nn as nn
        import torch.optim as optim

        optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
        for iteration in range(1, args.num_iterations + 1):
            for epoch in range(args.update_epochs):
                for start in range(0, args.batch_size, args.minibatch_size):
                    mb_inds = b_inds[start:start + args.minibatch_size]
                    loss = compute_loss(agent, mb_inds)
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()
                if args.target_kl is not None and approx_kl > args.target_kl:
                    break
        """,
    "unscale_under_same_flag_as_clip": """
        import torch

        scaler = torch.cuda.amp.GradScaler()
        for batch in loader:
            optimizer.zero_grad()
            with torch.cuda.amp.autocast():
                loss = model(batch)
            scaler.scale(loss).backward()
            if args.clip_grad:
                scaler.unscale_(optimizer)
            do_log = False
            if args.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            scaler.step(optimizer)
            scaler.update()
        """,
}


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


def test_messages_say_which_problem_and_how_to_fix():
    scaled = findings(FLAGGED["amp_clip_before_unscale"])[0].message
    assert "loss scale" in scaled and "`scaler.unscale_(optimizer)`" in scaled
    after = findings(FLAGGED["clip_after_step"])[0].message
    assert "no optimizer step uses" in after and "cleared" in after and "optimizer.zero_grad()" in after
    before = findings(FLAGGED["clip_before_backward"])[0].message
    assert "no optimizer step uses" in before and "backward" in before and "adds to them" in before


def test_a_method_called_on_an_instance_is_told_in_its_own_names():
    """The loop that runs it calls `trainer.step(...)`; the finding is in the method, where the
    scaler and the optimizer are `self.` attributes."""
    source = """
        import torch

        class AmpTrainer:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
                self.scaler = torch.amp.GradScaler("cuda")

            def step(self, batch):
                self.optimizer.zero_grad()
                self.scaler.scale(self.model(batch).mean()).backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)  # GL004
                self.scaler.step(self.optimizer)
                self.scaler.update()

        trainer = AmpTrainer(build_model())
        for batch in loader:
            trainer.step(batch)
        """
    (finding,) = findings(source)
    assert (finding.code, finding.line) == expected(source)[0]
    assert "loss scale of `self.scaler`" in finding.message
    assert "`self.scaler.unscale_(self.optimizer)`" in finding.message
    assert "trainer." not in finding.message


def test_a_clip_run_through_a_step_closure_is_named_as_run_by_that_call():
    (finding,) = findings("""
        def closure():
            optimizer.zero_grad()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            loss = criterion(model(x), y)
            loss.backward()
            return loss

        for x, y in loader:
            optimizer.step(closure)
        """)
    assert finding.message.startswith("The clip that `optimizer.step(closure)` runs clips gradients that no "
                                      "optimizer step uses")
    (direct,) = findings(FLAGGED["clip_before_backward"])
    assert direct.message.startswith("`") and "` clips gradients" in direct.message


def _apply(source: str, finding) -> str:
    text = textwrap.dedent(source)
    for edit in sorted(finding.fix.edits, key=lambda e: e.start, reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end :]
    return text


@pytest.mark.parametrize(
    "name",
    ["amp_clip_before_unscale", "amp_clip_value_from_import", "amp_nn_utils_alias_and_enabled_flag",
     "amp_accumulation_clip_every_micro_batch", "amp_trainer_method_if_use_amp", "fsdp_module_clip_with_sharded_scaler"],
)
def test_unscale_fix_inserts_the_call_and_removes_the_finding(name):
    source = FLAGGED[name]
    (finding,) = findings(source)
    assert finding.fix is not None
    if hasattr(finding.fix, "applicability"):
        assert finding.fix.applicability == "unsafe"
    fixed = _apply(source, finding)
    cst.parse_module(fixed)
    assert reported(fixed) == []
    inserted = fixed.splitlines()[finding.line - 1]
    clip_line = fixed.splitlines()[finding.line]
    assert ".unscale_(" in inserted and "clip_grad" in clip_line
    assert len(inserted) - len(inserted.lstrip()) == len(clip_line) - len(clip_line.lstrip())


def test_fix_keeps_crlf_and_comments():
    source = (
        "import torch\r\n"
        "scaler = torch.cuda.amp.GradScaler()\r\n"
        "for x, y in loader:\r\n"
        "    optimizer.zero_grad()\r\n"
        "    scaler.scale(model(x, y)).backward()\r\n"
        "    # keep the update stable\r\n"
        "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # max norm\r\n"
        "    scaler.step(optimizer)\r\n"
        "    scaler.update()\r\n"
    )
    (finding,) = lint_options(source, "train.py", None, codes=["GL004"])
    fixed = source[: finding.fix.edits[0].start] + finding.fix.edits[0].text + source[finding.fix.edits[0].end :]
    assert "    # keep the update stable\r\n    scaler.unscale_(optimizer)\r\n    torch.nn.utils.clip_grad_norm_" in fixed
    assert "# max norm\r\n" in fixed
    assert lint_options(fixed, "train.py", None, codes=["GL004"]) == []


def test_fix_on_a_one_line_suite_stays_on_the_line():
    source = textwrap.dedent(
        """
        import torch
        scaler = torch.cuda.amp.GradScaler()
        for x in loader:
            optimizer.zero_grad()
            scaler.scale(model(x)).backward()
            if clip: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        """
    )
    (finding,) = lint_options(source, "train.py", None, codes=["GL004"])
    fixed = source[: finding.fix.edits[0].start] + finding.fix.edits[0].text + source[finding.fix.edits[0].end :]
    assert "if clip: scaler.unscale_(optimizer); torch.nn.utils.clip_grad_norm_" in fixed
    cst.parse_module(fixed)


def test_no_fix_for_misplaced_clip_or_existing_unscale():
    assert all(f.fix is None for f in findings(FLAGGED["clip_after_step"]))
    assert all(f.fix is None for f in findings(FLAGGED["amp_unscale_after_clip"]))
    assert all(f.fix is None for f in findings(FLAGGED["amp_unscale_only_when_logging"]))


def test_fixed_scaled_clip_runs_and_clips_unscaled_gradients():
    torch = pytest.importorskip("torch")
    # CPU stand-in for a GradScaler: scale() multiplies the loss, unscale_() divides the grads.
    source = textwrap.dedent(
        """
        import torch

        class Scaler:
            def __init__(self):
                self.s = 1024.0
                self.unscaled = False
            def scale(self, loss):
                self.unscaled = False
                return loss * self.s
            def unscale_(self, opt):
                for group in opt.param_groups:
                    for p in group["params"]:
                        p.grad.div_(self.s)
                self.unscaled = True
            def step(self, opt):
                if not self.unscaled:
                    for group in opt.param_groups:
                        for p in group["params"]:
                            p.grad.div_(self.s)
                opt.step()
            def update(self):
                pass

        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = Scaler()
        norms = []
        for x in [torch.randn(8, 4) for _ in range(3)]:
            optimizer.zero_grad()
            scaler.scale(model(x).pow(2).mean()).backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
            scaler.step(optimizer)
            scaler.update()
        """
    )
    (finding,) = lint_options(source, "train.py", None, codes=["GL004"])
    fixed = source[: finding.fix.edits[0].start] + finding.fix.edits[0].text + source[finding.fix.edits[0].end :]
    before: dict = {}
    exec(compile(source, "before.py", "exec"), before)
    after: dict = {}
    exec(compile(fixed, "after.py", "exec"), after)
    # Before the fix the measured norms are the scaled ones (~1024x); after, the true ones.
    assert min(before["norms"]) > 100 * max(after["norms"])
    assert torch.isfinite(after["model"].weight).all()
