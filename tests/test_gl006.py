"""GL006 loss-history-keeps-graph: realistic flagged and clean training code.

Each case is a small script or function as people write them. Lines that must be reported carry a
`# GL006` comment; every other line must stay clean (and GL007/GL008 must not fire on them).
"""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options

CODES = ("GL006", "GL007", "GL008")


def _lint(source: str, **options):
    return lint_options(source, "train.py", AnalysisOptions(**options), codes=list(CODES))


def _marked(source: str):
    return [(n, "GL006") for n, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# GL006")]


def _apply(source: str, fix) -> str:
    for edit in sorted(fix.edits, key=lambda e: e.start, reverse=True):
        source = source[: edit.start] + edit.text + source[edit.end :]
    return source


def _trainer_with_dict_step(log: str, backward: str, store: str) -> str:
    """A Lightning-style module whose `training_step` returns {"loss", "logits", "log"} (the
    log entry holding `log`) and a hand-written trainer loop that runs `backward` and `store`."""
    return TRAINER_WITH_DICT_STEP.format(log=log, backward=backward, store=store)


TRAINER_WITH_DICT_STEP = """
        import torch
        from torch import nn


        class LitRegressor(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = nn.Linear(3, 1)

            def training_step(self, batch, batch_idx):
                x, y = batch
                logits = self.layer(x)
                loss = nn.functional.mse_loss(logits, y)
                return {{"loss": loss, "logits": logits, "log": {{"train_loss": {log}}}}}


        class MiniTrainer:
            def __init__(self):
                self.history = []

            def fit(self, module, loader, optimizer):
                for batch_idx, batch in enumerate(loader):
                    out = module.training_step(batch, batch_idx)
                    optimizer.zero_grad()
                    {backward}
                    optimizer.step()
                    {store}
    """


FLAGGED = {
    "critic_loss_kept_in_a_gradient_penalty_loop": """
        import torch

        def train_critic(critic, opt, loader, gp_weight=10.0):
            history = []
            for real, fake in loader:
                mix = (0.5 * real + 0.5 * fake).requires_grad_(True)
                grads = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)[0]
                penalty = ((grads.norm(2, dim=1) - 1) ** 2).mean()
                loss = critic(fake).mean() - critic(real).mean() + gp_weight * penalty
                opt.zero_grad()
                loss.backward()
                opt.step()
                history.append(loss)  # GL006
            return history
    """,
    "stored_under_a_key_that_changes_each_iteration": """
        def fit(model, batches, opt, loss_fn, epoch):
            history = {}
            for step, (x, y) in enumerate(batches):
                loss = loss_fn(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                history[epoch, step] = loss  # GL006
            return history
    """,
    "running_loss_plus_equals": """
        import torch

        def train(model, loader, optimizer, criterion, epochs):
            for epoch in range(epochs):
                running_loss = 0.0
                for inputs, labels in loader:
                    optimizer.zero_grad()
                    outputs = model(inputs)
                    loss = criterion(outputs, labels)
                    loss.backward()
                    optimizer.step()
                    running_loss += loss  # GL006
                print(f"epoch {epoch}: {running_loss / len(loader):.3f}")
    """,
    "losses_list_for_plot": """
        import torch
        import matplotlib.pyplot as plt

        losses = []
        for step in range(1000):
            x, y = sample_batch()
            pred = net(x)
            loss = ((pred - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss)  # GL006
        plt.plot([l.item() for l in losses])
    """,
    "total_equals_total_plus_loss": """
        def train_epoch(model, loader, opt, crit):
            total = 0
            for x, y in loader:
                opt.zero_grad()
                loss = crit(model(x), y)
                loss.backward()
                opt.step()
                total = total + loss  # GL006
            return total / len(loader)
    """,
    "history_dict_store": """
        import torch

        def fit(model, batches, opt, loss_fn):
            history = {}
            for step, (x, y) in enumerate(batches):
                opt.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                history[step] = loss  # GL006
            return history
    """,
    "scaled_copy_for_epoch_average": """
        def train(model, loader, optimizer, criterion, device):
            model.train()
            epoch_loss = 0.0
            for images, targets in loader:
                images, targets = images.to(device), targets.to(device)
                optimizer.zero_grad()
                loss = criterion(model(images), targets)
                loss.backward()
                optimizer.step()
                epoch_loss += loss * images.size(0)  # GL006
            return epoch_loss / len(loader.dataset)
    """,
    "outputs_kept_for_metrics": """
        import torch

        def train(model, loader, opt, crit):
            all_logits = []
            for x, y in loader:
                logits = model(x)
                loss = crit(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                all_logits.append(logits)  # GL006
            preds = torch.cat(all_logits).argmax(1)
            return preds
    """,
    "probabilities_kept": """
        import torch

        def train(model, loader, opt, crit):
            scores = []
            for x, y in loader:
                logits = model(x)
                loss = crit(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                scores.append(torch.sigmoid(logits))  # GL006
            return torch.cat(scores)
    """,
    "rnn_lm_total_loss": """
        import torch
        from torch import nn

        def train(model, train_data, bptt, criterion, optimizer, ntokens):
            total_loss = 0.
            hidden = model.init_hidden(20)
            for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
                data, targets = get_batch(train_data, i)
                hidden = repackage_hidden(hidden)
                model.zero_grad()
                output, hidden = model(data, hidden)
                loss = criterion(output.view(-1, ntokens), targets)
                loss.backward()
                optimizer.step()
                total_loss += loss  # GL006
                if batch % 200 == 0:
                    print(total_loss / 200)
                    total_loss = 0


        def repackage_hidden(h):
            if isinstance(h, torch.Tensor):
                return h.detach()
            return tuple(repackage_hidden(v) for v in h)
    """,
    "trainer_method_self_history": """
        class Trainer:
            def __init__(self, model, opt, crit):
                self.model, self.opt, self.crit = model, opt, crit
                self.train_losses = []

            def train_epoch(self, loader):
                for x, y in loader:
                    self.opt.zero_grad()
                    loss = self.crit(self.model(x), y)
                    loss.backward()
                    self.opt.step()
                    self.train_losses.append(loss)  # GL006
    """,
    "seq2seq_epoch_loss": """
        def train(encoder, decoder, pairs, enc_opt, dec_opt, criterion, n_epochs):
            for epoch in range(n_epochs):
                epoch_loss = 0
                for src, tgt in pairs:
                    enc_opt.zero_grad()
                    dec_opt.zero_grad()
                    enc_out, hidden = encoder(src)
                    loss = 0
                    dec_input = tgt[0]
                    for t in range(1, tgt.size(0)):
                        out, hidden = decoder(dec_input, hidden, enc_out)
                        loss += criterion(out, tgt[t])
                        dec_input = tgt[t]
                    loss.backward()
                    enc_opt.step()
                    dec_opt.step()
                    epoch_loss += loss / tgt.size(0)  # GL006
                print(epoch, epoch_loss)
    """,
    "gan_losses_per_network": """
        import torch

        G_losses = []
        D_losses = []
        for epoch in range(5):
            for real, _ in dataloader:
                noise = torch.randn(real.size(0), 100, 1, 1)
                fake = netG(noise)
                optD.zero_grad()
                errD = criterion(netD(real), ones) + criterion(netD(fake.detach()), zeros)
                errD.backward()
                optD.step()
                optG.zero_grad()
                errG = criterion(netD(fake), ones)
                errG.backward()
                optG.step()
                G_losses.append(errG)  # GL006
                D_losses.append(errD)  # GL006
    """,
    "while_loop_steps": """
        step = 0
        loss_sum = 0.0
        while step < max_steps:
            batch = next(data_iter)
            loss = model(batch).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss  # GL006
            step += 1
    """,
    "rl_episode_returns_losses": """
        import torch

        def train(policy, env, optimizer, episodes):
            losses = []
            for episode in range(episodes):
                obs = env.reset()
                log_probs, rewards = [], []
                done = False
                while not done:
                    dist = policy(torch.as_tensor(obs))
                    action = dist.sample()
                    log_probs.append(dist.log_prob(action))
                    obs, reward, done, _ = env.step(action.item())
                    rewards.append(reward)
                returns = torch.tensor(discount(rewards))
                loss = -(torch.stack(log_probs) * returns).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss)  # GL006
            return losses
    """,
    "finetune_defaultdict_history": """
        from collections import defaultdict

        def finetune(model, loader, optimizer, scheduler):
            history = defaultdict(list)
            for batch in loader:
                outputs = model(**batch)
                loss = outputs.loss
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                history["loss"].append(loss)  # GL006
            return history
    """,
    "amp_scaled_loss_total": """
        import torch

        def train(model, loader, optimizer, scaler, criterion):
            running = 0.0
            for x, y in loader:
                optimizer.zero_grad()
                with torch.autocast("cuda"):
                    loss = criterion(model(x), y)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                running += loss  # GL006
            print("loss", running / len(loader))
    """,
    "multi_task_losses_dict": """
        def train(model, loader, opt, heads):
            meters = {"seg": 0.0, "depth": 0.0}
            for x, seg, depth in loader:
                out_seg, out_depth = model(x)
                l_seg = heads["seg"](out_seg, seg)
                l_depth = heads["depth"](out_depth, depth)
                loss = l_seg + l_depth
                opt.zero_grad()
                loss.backward()
                opt.step()
                meters["seg"] += l_seg  # GL006
                meters["depth"] += l_depth  # GL006
            return meters
    """,
    "ema_of_loss_for_progress_bar": """
        from tqdm import tqdm

        def train(model, loader, optimizer, criterion):
            smooth = 0.0
            bar = tqdm(loader)
            for x, y in bar:
                loss = criterion(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                smooth = 0.98 * smooth + 0.02 * loss  # GL006
                bar.set_postfix(loss=f"{smooth:.4f}")
    """,
    "list_plus_equals_display": """
        def train(model, loader, optimizer, criterion, writer):
            step_losses = []
            for step, (x, y) in enumerate(loader):
                loss = criterion(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step_losses += [loss]  # GL006
                writer.add_scalar("loss", loss.item(), step)
            return step_losses
    """,
    "epoch_list_with_micro_batch_steps_inside": """
        def train(model, loader, optimizer, accumulation, epochs):
            for epoch in range(epochs):
                epoch_losses = []  # reset per epoch, but the steps happen inside: an epoch of graphs
                for i, (x, y) in enumerate(loader):
                    loss = (model(x) - y).pow(2).mean()
                    (loss / accumulation).backward()
                    epoch_losses.append(loss)  # GL006
                    if (i + 1) % accumulation == 0:
                        optimizer.step()
                        optimizer.zero_grad()
                print(epoch, sum(l.item() for l in epoch_losses))
    """,
    "micro_batch_list_reset_per_epoch_not_per_step": """
        def train(model, loader, optimizer, micro):
            for epoch in range(3):
                kept = []
                for batch in loader:
                    for part in batch.chunk(micro):
                        loss = model(part).mean()
                        loss.backward()
                        kept.append(loss)  # GL006
                    optimizer.step()
                    optimizer.zero_grad()
                print(sum(l.item() for l in kept))
    """,
    "step_dict_log_entry_holds_the_loss": _trainer_with_dict_step(
        'loss', 'out["loss"].backward()',
        'self.history.append(out["log"]["train_loss"])  # GL006'),
    "step_dict_log_dict_holds_the_loss": _trainer_with_dict_step(
        'loss', 'out["loss"].backward()',
        'self.history.append(out["log"])  # GL006'),
    "step_dict_walked_entry_kept": _trainer_with_dict_step(
        'loss.detach()', 'out["loss"].backward()',
        'self.history.append(out["loss"])  # GL006'),
    "step_dict_logits_entry_kept": _trainer_with_dict_step(
        'loss.detach()', 'loss = out["loss"]; loss.backward()',
        'self.history.append(out["logits"])  # GL006'),
    "step_dict_whole_dict_kept": _trainer_with_dict_step(
        'loss.detach()', 'out["loss"].backward()',
        'self.history.append(out)  # GL006'),
    "ema_with_a_conditional_start": """
        import torch

        smoothed = None
        for step in range(1000):
            loss = model(next_batch()).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss  # GL006
            if step % 100 == 0:
                print(step, float(smoothed))
    """,
    "ema_with_the_start_in_the_else_branch": """
        def train(model, loader, opt):
            ema = None
            for x, y in loader:
                loss = (model(x) - y).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                ema = ema * 0.98 + loss * 0.02 if ema is not None else loss  # GL006
            return ema
    """,
    "both_branches_accumulate": """
        total = 0.0
        for i, (x, y) in enumerate(loader):
            loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total = total + 2 * loss if i % 2 else total + loss  # GL006
        print(total)
    """,
}

CLEAN = {
    "maml_inner_loop_keeps_fast_weights_for_the_outer_backward": """
        import torch
        import torch.nn.functional as F

        class Learner(torch.nn.Module):
            def adapt(self, x, y, steps=3, lr=0.1):
                params = (self.w, self.w2)
                for _ in range(steps):
                    loss = F.mse_loss(self(x, params), y)
                    grads = torch.autograd.grad(loss, params, create_graph=True)
                    params = tuple(p - lr * g for p, g in zip(params, grads))
                    self.adapted.append(params)
                    self.inner_losses.append(loss)
                return params
    """,
    "latest_values_overwritten_under_constant_keys": """
        def fit(model, batches, opt, loss_fn):
            latest = {}
            window = [None]
            for x, y in batches:
                logits = model(x)
                loss = loss_fn(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                latest["loss"] = loss
                latest["logits"] = logits
                window[0] = loss
                window[-1] = loss
            return float(latest["loss"])
    """,
    "micro_batch_losses_reset_each_step": """
        def train(model, loader, optimizer, micro):
            for batch in loader:
                micro_losses = []
                for part in batch.chunk(micro):
                    loss = model(part).pow(2).mean()
                    loss.backward()
                    micro_losses.append(loss)
                optimizer.step()
                optimizer.zero_grad()
                print(sum(l.item() for l in micro_losses))
    """,
    "micro_batch_total_reset_each_scaled_step": """
        def train(model, loader, optimizer, scaler, chunks):
            for x, y in loader:
                total = 0.0
                for xs, ys in zip(x.chunk(chunks), y.chunk(chunks)):
                    loss = (model(xs) - ys).abs().mean() / chunks
                    scaler.scale(loss).backward()
                    total += loss
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad()
                log(total.item())
    """,
    "item_accumulation": """
        def train(model, loader, optimizer, criterion):
            running_loss = 0.0
            losses = []
            for inputs, labels in loader:
                optimizer.zero_grad()
                loss = criterion(model(inputs), labels)
                loss.backward()
                optimizer.step()
                running_loss += loss.item()
                losses.append(loss.item())
            return running_loss / len(loader), losses
    """,
    "detach_float_tolist_forms": """
        import torch

        def train(model, loader, optimizer, criterion):
            history, totals, outs = [], 0.0, []
            preds = []
            for x, y in loader:
                optimizer.zero_grad()
                logits = model(x)
                loss = criterion(logits, y)
                loss.backward()
                optimizer.step()
                history.append(loss.detach())
                totals += float(loss)
                outs.append(logits.detach().cpu())
                preds.extend(logits.argmax(1).tolist())
            return history, totals, outs, preds
    """,
    "tbptt_sum_then_one_backward": """
        def train(model, batches, criterion, optimizer):
            for x, y in batches:
                hidden = model.init_hidden(x.size(1))
                loss = 0
                for t in range(x.size(0)):
                    out, hidden = model(x[t], hidden)
                    loss += criterion(out, y[t])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "multi_task_sum_in_iteration": """
        def train(model, loader, opt, criteria):
            for x, targets in loader:
                outputs = model(x)
                total = 0
                for out, target, crit in zip(outputs, targets, criteria):
                    total = total + crit(out, target)
                opt.zero_grad()
                total.backward()
                opt.step()
    """,
    "evaluation_under_no_grad": """
        import torch

        def evaluate(model, loader, criterion):
            model.eval()
            total = 0.0
            outputs = []
            with torch.no_grad():
                for x, y in loader:
                    out = model(x)
                    total += criterion(out, y)
                    outputs.append(out)
            return total / len(loader), outputs
    """,
    "validation_in_training_loop_no_grad": """
        import torch

        def fit(model, train_loader, val_loader, opt, crit):
            for x, y in train_loader:
                opt.zero_grad()
                loss = crit(model(x), y)
                loss.backward()
                opt.step()
            val_loss = 0
            with torch.inference_mode():
                for x, y in val_loader:
                    val_loss += crit(model(x), y)
            return val_loss
    """,
    "lightning_self_log": """
        import pytorch_lightning as pl

        class LitModel(pl.LightningModule):
            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = self.loss_fn(self(x), y)
                self.log("train_loss", loss, prog_bar=True)
                self.train_acc.update(self(x), y)
                return loss
    """,
    "torchmetrics_update": """
        import torchmetrics

        def train(model, loader, opt, crit):
            metric = torchmetrics.MeanMetric()
            acc = torchmetrics.Accuracy(task="multiclass", num_classes=10)
            for x, y in loader:
                logits = model(x)
                loss = crit(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                metric.update(loss)
                acc.update(logits, y)
            return metric.compute()
    """,
    "accumulated_then_backpropagated": """
        def train(model, loader, opt, crit):
            total_loss = 0
            for x, y in loader:
                total_loss += crit(model(x), y)
            opt.zero_grad()
            total_loss.backward()
            opt.step()
    """,
    "gradient_accumulation_every_k": """
        def train(model, loader, opt, crit, accum):
            acc_loss = 0
            for i, (x, y) in enumerate(loader):
                acc_loss = acc_loss + crit(model(x), y) / accum
                if (i + 1) % accum == 0:
                    opt.zero_grad()
                    acc_loss.backward()
                    opt.step()
                    acc_loss = 0
    """,
    "reinforce_saved_log_probs": """
        import torch

        def finish_episode(policy, optimizer, gamma):
            R = 0
            returns = []
            for r in policy.rewards[::-1]:
                R = r + gamma * R
                returns.insert(0, R)
            returns = torch.tensor(returns)
            policy_loss = []
            for log_prob, R in zip(policy.saved_log_probs, returns):
                policy_loss.append(-log_prob * R)
            optimizer.zero_grad()
            loss = torch.cat(policy_loss).sum()
            loss.backward()
            optimizer.step()

        def run(policy, env, optimizer):
            for episode in range(1000):
                state = env.reset()
                for t in range(10000):
                    probs = policy(torch.from_numpy(state).float())
                    m = torch.distributions.Categorical(probs)
                    action = m.sample()
                    policy.saved_log_probs.append(m.log_prob(action))
                    state, reward, done, _ = env.step(action.item())
                    policy.rewards.append(reward)
                    if done:
                        break
                finish_episode(policy, optimizer, 0.99)
    """,
    "a2c_rollout_buffers_reset": """
        import torch

        def train(model, env, optimizer, n_steps, updates):
            state = env.reset()
            for update in range(updates):
                log_probs, values, rewards = [], [], []
                for _ in range(n_steps):
                    dist, value = model(state)
                    action = dist.sample()
                    state, reward, done, _ = env.step(action)
                    log_probs.append(dist.log_prob(action))
                    values.append(value)
                    rewards.append(reward)
                returns = compute_returns(rewards)
                advantage = returns - torch.cat(values)
                loss = -(torch.cat(log_probs) * advantage.detach()).mean() + advantage.pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "counter_and_numbers": """
        def train(model, loader, opt, crit):
            seen = 0
            correct = 0
            for x, y in loader:
                out = model(x)
                loss = crit(out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += y.size(0)
                correct += (out.argmax(1) == y).sum().item()
            return correct / seen
    """,
    "best_loss_tracking": """
        def train(model, loader, opt, crit):
            best = float("inf")
            for x, y in loader:
                loss = crit(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if loss.item() < best:
                    best = loss.item()
            return best
    """,
    "average_meter_with_item": """
        def train(model, loader, opt, crit, meter):
            for x, y in loader:
                loss = crit(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                meter.update(loss.item(), x.size(0))
    """,
    "per_iteration_list_reset": """
        def train(model, loader, opt, heads):
            for x, ys in loader:
                feats = model(x)
                losses = []
                for head, y in zip(heads, ys):
                    losses.append(head(feats, y))
                loss = sum(losses)
                opt.zero_grad()
                loss.backward()
                opt.step()
    """,
    "logging_calls_only": """
        import wandb

        def train(model, loader, optimizer, criterion, writer, logger):
            for step, (x, y) in enumerate(loader):
                loss = criterion(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                writer.add_scalar("train/loss", loss, step)
                wandb.log({"loss": loss})
                logger.info("step %d loss %s", step, loss)
                print(f"step {step}: {loss}")
    """,
    "running_reward_of_environment_numbers": """
        import gym
        import torch

        env = gym.make("CartPole-v1")
        running_reward = 10.0
        for episode in range(1000):
            obs, _ = env.reset()
            log_probs, rewards = [], []
            for t in range(500):
                dist = policy(torch.from_numpy(obs).float())
                action = dist.sample()
                obs, reward, done, _, _ = env.step(action.item())
                log_probs.append(dist.log_prob(action))
                rewards.append(reward)
                if done:
                    break
            returns = discounted(rewards)
            loss = -(torch.stack(log_probs) * returns).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running_reward = 0.05 * sum(rewards) + 0.95 * running_reward
    """,
    "stats_returned_beside_the_loss": """
        def step_with_rollouts(self, loader):
            stats_list = []
            for batch in loader:
                loss, stats = self.compute_loss(batch)
                self.accelerator.backward(loss)
                self.optimizer.step()
                self.optimizer.zero_grad()
                stats_list.append(stats)
            return stats_list
    """,
    "topk_correct_counts": """
        from utils import correct_num

        def train(net, loader, optimizer, criterion):
            top1_num = top5_num = 0
            for inputs, targets in loader:
                optimizer.zero_grad()
                embeddings, logits = net(inputs)
                loss = criterion(logits, targets)
                loss.backward()
                optimizer.step()
                top1, top5 = correct_num(logits, targets, topk=(1, 5))
                top1_num += top1
                top5_num += top5
            return top1_num, top5_num
    """,
    "no_training_loop": """
        import torch

        losses = []
        for x, y in data:
            loss = model(x).sub(y).pow(2).mean()
            losses.append(loss)
        total = torch.stack(losses).mean()
        total.backward()
    """,
    "step_dict_log_entry_detached": _trainer_with_dict_step(
        'loss.detach()', 'out["loss"].backward()',
        'self.history.append(out["log"]["train_loss"])'),
    "step_dict_log_entry_a_number": _trainer_with_dict_step(
        'loss.item()', 'loss = out["loss"]; loss.backward()',
        'self.history.append(out["log"])'),
    "step_dict_log_read_through_a_name": _trainer_with_dict_step(
        'loss.detach()', 'loss = out["loss"]; loss.backward()',
        'logs = out["log"]; self.history.append(logs["train_loss"])'),
    "step_dict_from_an_unknown_callee": """
        def fit(trainer, loader, optimizer, history):
            for batch in loader:
                out = trainer.compute_step(batch)
                optimizer.zero_grad()
                out["loss"].backward()
                optimizer.step()
                history.append(out["log"]["train_loss"])
    """,
    "step_tuple_second_entry_a_number": """
        def step(model, batch):
            x, y = batch
            loss = ((model(x) - y) ** 2).mean()
            return loss, loss.item()


        def fit(model, loader, optimizer):
            history = []
            for batch in loader:
                out = step(model, batch)
                optimizer.zero_grad()
                out[0].backward()
                optimizer.step()
                history.append(out[1])
            return history
    """,
    "ema_of_numbers_with_a_conditional_start": """
        smoothed = None
        for x, y in loader:
            loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            smoothed = loss.item() if smoothed is None else 0.9 * smoothed + 0.1 * loss.item()
            ema = loss.detach() if smoothed is None else 0.9 * ema + 0.1 * loss.detach()
            last = loss.item() if len(loader) > 1 else 0.0
            best = loss if best is None or loss < best else best
            total = total + (loss.item() if x.numel() else 0.0)
        print(smoothed, ema, last, best, total)
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
    assert len(FLAGGED) >= 15 and len(CLEAN) >= 15


def test_message_and_severity():
    source = textwrap.dedent(FLAGGED["running_loss_plus_equals"])
    (finding,) = _lint(source)
    assert finding.severity == "warning"
    assert finding.name == "loss-history-keeps-graph"
    assert "`running_loss`" in finding.message and "`loss.item()`" in finding.message


def test_non_scalar_value_gets_an_unsafe_detach_fix():
    source = textwrap.dedent(FLAGGED["outputs_kept_for_metrics"])
    (finding,) = _lint(source)
    assert "`logits.detach()`" in finding.message and ".item()" not in finding.message
    assert finding.fix is not None and finding.fix.applicability == "unsafe"
    fixed = _apply(source, finding.fix)
    assert "all_logits.append(logits.detach())" in fixed
    assert _lint(fixed) == []


def test_unsafe_fix_wraps_an_expression():
    source = textwrap.dedent(FLAGGED["probabilities_kept"])
    (finding,) = _lint(source)
    fixed = _apply(source, finding.fix)
    assert "scores.append((torch.sigmoid(logits)).detach())" in fixed
    cst.parse_module(fixed)
    assert _lint(fixed) == []


def test_safe_item_fix_when_only_printed():
    source = textwrap.dedent(FLAGGED["running_loss_plus_equals"])
    (finding,) = _lint(source)
    assert finding.fix is not None and finding.fix.applicability == "safe"
    fixed = _apply(source, finding.fix)
    assert "running_loss += loss.item()" in fixed
    cst.parse_module(fixed)
    assert _lint(fixed) == []


def test_item_fix_is_unsafe_when_the_holder_is_used_as_a_tensor():
    # returned to the caller: `.item()` would change what the caller gets
    source = textwrap.dedent(FLAGGED["total_equals_total_plus_loss"])
    (finding,) = _lint(source)
    assert finding.fix.applicability == "unsafe"
    assert "total = total + loss.item()" in _apply(source, finding.fix)
    source = textwrap.dedent(FLAGGED["losses_list_for_plot"])
    (finding,) = _lint(source)
    assert finding.fix.applicability == "unsafe"  # `l.item()` is called on the elements later


def test_fix_when_list_only_logged():
    source = textwrap.dedent(
        """
        import logging

        losses = []
        for x, y in loader:
            loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss)
            logging.info("losses so far: %s", losses)
        """
    )
    (finding,) = _lint(source)
    assert finding.fix.applicability == "safe"
    fixed = _apply(source, finding.fix)
    assert "losses.append(loss.item())" in fixed
    assert _lint(fixed) == []


def test_item_fix_is_unsafe_when_the_holder_is_used_through_a_method():
    source = textwrap.dedent(
        """
        running_loss = 0.0
        for x, y in loader:
            loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running_loss += loss
        print(running_loss.item() / len(loader))
        """
    )
    (finding,) = _lint(source)
    assert finding.fix.applicability == "unsafe"


def test_conditional_accumulation_fix_is_never_the_safe_item():
    # `.item()` on the added loss leaves the first iteration's loss (with its graph) in the holder
    source = textwrap.dedent(FLAGGED["ema_with_a_conditional_start"])
    (finding,) = _lint(source)
    assert "`0.1 * loss`" in finding.message
    assert finding.fix is not None and finding.fix.applicability == "unsafe"
    fixed = _apply(source, finding.fix)
    assert "0.9 * smoothed + (0.1 * loss).detach()" in fixed
    assert _lint(fixed) == []


def test_the_finding_names_the_line_of_the_backward_whose_graph_it_keeps():
    """`gradlint run` joins the finding to that backward, not to a nearer one (a GAN's other loss)."""
    source = textwrap.dedent("""
        def train(gen, critic, batches, gen_opt, critic_opt, bce):
            history = []
            for real, noise in batches:
                fake = gen(noise)
                gen_loss = bce(critic(fake), 1)
                gen_opt.zero_grad()
                gen_loss.backward()
                gen_opt.step()
                critic_loss = bce(critic(real), 1) + bce(critic(fake.detach()), 0)
                critic_opt.zero_grad()
                critic_loss.backward()
                critic_opt.step()
                history.append(gen_loss)
    """)
    (finding,) = _lint(source)
    lines = source.splitlines()
    assert lines[finding.line - 1].strip() == "history.append(gen_loss)"
    assert [lines[n - 1].strip() for n in finding.related] == ["gen_loss.backward()"]
