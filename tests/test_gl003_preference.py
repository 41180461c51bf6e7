"""GL003 on preference losses (DPO, IPO, pairwise reward models) as RLHF trainers write them
(issue 10): chosen and rejected sequences padded and concatenated into one batch, run through the
model once, per-sequence log-probabilities summed over the tokens, split back by row slices, and a
loss of one value per pair handed to a backward (a strategy or engine forwarding to DeepSpeed, or
`loss.backward()`).

Lines that must be reported carry a `# GL003` comment; every other line must stay clean.
"""

from __future__ import annotations

import pytest

from harness import lint_project, marked_lines

PER_SAMPLE = "has one value per sample: fails for any batch larger than 1"


# A preference trainer: a loss module returning one value per pair, a nested padding helper,
# chosen and rejected concatenated along dim 0, per-sequence log-probs split back by row slices.
TRAINER = """
    import torch
    import torch.nn.functional as F
    from torch import nn


    class PairPreferenceLoss(nn.Module):
        def __init__(self, beta=0.1):
            super().__init__()
            self.beta = beta

        def forward(self, pol_good, pol_bad, ref_good, ref_bad):
            margin = (pol_good - pol_bad) - (ref_good - ref_bad)
            per_pair = -F.logsigmoid(self.beta * margin)
            return {REDUCE}, (pol_good - ref_good).detach(), (pol_bad - ref_bad).detach()


    class PreferenceTrainer:
        def __init__(self, policy, reference, strategy, loader, pad_id):
            self.policy = policy
            self.reference = reference
            self.strategy = strategy
            self.loader = loader
            self.pad_id = pad_id
            self.criterion = PairPreferenceLoss(0.2)

        def joined_inputs(self, good, bad):
            def widen(t, size, fill, dim=-1):
                if t.size(dim) >= size:
                    return t
                extra = list(t.shape)
                extra[dim] = size - t.size(dim)
                return torch.cat([t, fill * torch.ones(*extra, dtype=t.dtype, device=t.device)], dim=dim)

            width = max(good.shape[1], bad.shape[1])
            return torch.cat((widen(good, width, self.pad_id), widen(bad, width, self.pad_id)), dim=0)

        def seq_logprob(self, logits, tokens):
            tokens = tokens[:, 1:].clone()
            logits = logits[:, :-1, :]
            keep = tokens != self.pad_id
            tokens[tokens == self.pad_id] = 0
            picked = torch.gather(logits.log_softmax(-1), dim=2, index=tokens.unsqueeze(2)).squeeze(2)
            return (picked * keep).sum(-1)

        def both_logprobs(self, net, good, bad):
            joined = self.joined_inputs(good, bad)
            scores = net(joined)["logits"]
            per_seq = self.seq_logprob(scores, joined)
            return per_seq[: good.shape[0]], per_seq[good.shape[0] :]

        def train(self):
            for good, bad in self.loader:
                pol_good, pol_bad = self.both_logprobs(self.policy, good, bad)
                with torch.no_grad():
                    ref_good, ref_bad = self.both_logprobs(self.reference, good, bad)
                loss, _, _ = self.criterion(pol_good, pol_bad, ref_good, ref_bad)
                self.strategy.backward(loss, self.policy){MARK}
                self.strategy.step()
"""


def test_trainer_with_strategy_backward(tmp_path):
    text = TRAINER.replace("{REDUCE}", "per_pair").replace("{MARK}", "  # GL003")
    source, found = lint_project(tmp_path, {"trainer.py": text}, "trainer.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert PER_SAMPLE in found[0].message
    assert "`loss.mean()` or `loss.sum()`" in found[0].help


@pytest.mark.parametrize("reduced", ["per_pair.mean()", "per_pair.sum()", "per_pair.sum(-1)", "per_pair[0]",
                                     "per_pair[-1]", "per_pair[:1]", "per_pair[-1:]", "per_pair[::2]"])
def test_trainer_twin_reduced_or_one_pair(tmp_path, reduced):
    """A full reduction (also `.sum(-1)` of the per-pair vector), or one pair picked: clean."""
    text = TRAINER.replace("{REDUCE}", reduced).replace("{MARK}", "")
    _, found = lint_project(tmp_path, {"trainer.py": text}, "trainer.py", "GL003")
    assert [(f.line, f.message) for f in found] == []


def test_loss_module_in_another_module(tmp_path):
    """The loss module lives in a package and is re-exported, as RLHF libraries lay it out."""
    loss_module = TRAINER.split("class PreferenceTrainer")[0].replace("{REDUCE}", "per_pair")
    trainer = "import torch\nfrom rl.models import PairPreferenceLoss\n\n\nclass PreferenceTrainer" + (
        TRAINER.split("class PreferenceTrainer")[1].replace("{MARK}", "  # GL003")
    )
    files = {
        "rl/__init__.py": "",
        "rl/models/__init__.py": "from .losses import PairPreferenceLoss\n",
        "rl/models/losses.py": loss_module,
        "rl/trainer.py": trainer,
    }
    source, found = lint_project(tmp_path, files, "rl/trainer.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert found


FLAGGED = {
    "functions_engine_backward_fpad": """
        import deepspeed
        import torch
        import torch.nn.functional as F

        def pad_right(t, length, value):
            return F.pad(t, (0, length - t.shape[1]), value=value)

        def token_logps(logits, labels):
            logp = logits[:, :-1, :].log_softmax(dim=-1)
            return logp.gather(-1, labels[:, 1:].unsqueeze(-1)).squeeze(-1).sum(-1)

        def dpo_loss(pc, pr, rc, rr, beta=0.1):
            return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))

        engine, opt, _, _ = deepspeed.initialize(model=policy, model_parameters=policy.parameters())
        for batch in train_loader:
            n = batch["chosen"].shape[0]
            size = max(batch["chosen"].shape[1], batch["rejected"].shape[1])
            ids = torch.cat([pad_right(batch["chosen"], size, 0), pad_right(batch["rejected"], size, 0)], dim=0)
            logps = token_logps(engine(ids).logits, ids)
            with torch.no_grad():
                ref = token_logps(ref_model(ids).logits, ids)
            loss = dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:])
            engine.backward(loss)  # GL003
            engine.step()
    """,
    "ipo_squared_margin_plain_backward": """
        import torch

        def sequence_scores(model, ids, mask):
            logits = model(ids, attention_mask=mask).logits[:, :-1, :]
            chosen_tok = torch.gather(logits.log_softmax(-1), 2, ids[:, 1:].unsqueeze(2)).squeeze(2)
            return (chosen_tok * mask[:, 1:]).sum(-1) / mask[:, 1:].sum(-1)

        for batch in loader:
            half = batch["chosen_ids"].shape[0]
            ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])
            mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
            scores = sequence_scores(policy, ids, mask)
            ratio = scores[:half] - scores[half:]
            loss = (ratio - 1 / (2 * 0.1)) ** 2
            optimizer.zero_grad()
            loss.backward()  # GL003
            optimizer.step()
    """,
    "reward_model_pairwise_rows": """
        import torch
        import torch.nn.functional as F

        for chosen, rejected in pair_loader:
            rewards = reward_model(torch.cat((chosen, rejected), dim=0))
            better, worse = rewards[: chosen.size(0)], rewards[chosen.size(0):]
            loss = -F.logsigmoid(better - worse)
            accelerator.backward(loss)  # GL003
    """,
    "nested_helper_in_function_with_closure": """
        import torch
        import torch.nn.functional as F

        def train(model, loader, opt, pad_id):
            def run(tokens):
                out = model(tokens)
                return torch.gather(out[:, :-1, :].log_softmax(-1), 2, tokens[:, 1:, None]).squeeze(2).sum(-1)

            for good, bad in loader:
                logps = run(torch.cat([good, bad], dim=0))
                gap = logps[: len(good)] - logps[len(good):]
                loss = -F.logsigmoid(gap)
                opt.zero_grad()
                loss.backward()  # GL003
                opt.step()
    """,
    "nested_helper_reads_the_local_criterion": """
        import torch.nn as nn

        def train(model, loader):
            crit = nn.MSELoss(reduction="none")

            def step(pred, y):
                return crit(pred, y)

            for x, y in loader:
                step(model(x), y).backward()  # GL003
    """,
    "reward_model_returning_values_and_aux": """
        import torch
        import torch.nn.functional as F

        class RewardTrainer:
            def __init__(self, model, strategy, train_dataloader):
                self.model = model
                self.strategy = strategy
                self.train_dataloader = train_dataloader

            def both_rewards(self, chosen, rejected):
                values, aux = self.model(torch.cat([chosen, rejected], dim=0))
                return values[: chosen.shape[0]], values[chosen.shape[0] :], aux

            def fit(self):
                for chosen, rejected in self.train_dataloader:
                    good, bad, aux = self.both_rewards(chosen, rejected)
                    loss = -F.logsigmoid(good - bad)
                    self.strategy.backward(loss, self.model)  # GL003
    """,
    "pairs_concatenated_along_dim_1": """
        import torch
        import torch.nn.functional as F

        for good, bad in loader:
            g = (policy(good).log_softmax(-1)[:, :, 0]).sum(-1)
            b = (policy(bad).log_softmax(-1)[:, :, 0]).sum(-1)
            pair = torch.cat([g.unsqueeze(1), b.unsqueeze(1)], dim=1)
            loss = -F.log_softmax(pair, dim=1)[:, 0]
            loss.backward()  # GL003
    """,
    "stack_of_per_pair_losses": """
        import torch
        import torch.nn.functional as F

        for good, bad in loader:
            rows = policy(torch.cat([good, bad]))
            n = good.shape[0]
            sig = -F.logsigmoid(rows[:n] - rows[n:])
            hinge = torch.relu(1 - (rows[:n] - rows[n:]))
            both = [sig, hinge]
            engine.backward(torch.stack(both))  # GL003
    """,
    "row_range_slices": """
        import torch.nn.functional as F

        for batch in loader:
            out = model(batch["ids"])
            scores = out[:, -1]
            k = batch["n_chosen"]
            loss = -F.logsigmoid(scores[0:k] - scores[k : 2 * k])
            loss.backward()  # GL003
    """,
}

CLEAN = {
    "per_pair_mean_before_engine_backward": """
        import torch
        import torch.nn.functional as F

        def token_logps(logits, labels):
            logp = logits[:, :-1].log_softmax(dim=-1)
            return logp.gather(-1, labels[:, 1:].unsqueeze(-1)).squeeze(-1).sum(-1)

        for batch in train_loader:
            n = batch["chosen"].shape[0]
            ids = torch.cat([batch["chosen"], batch["rejected"]], dim=0)
            logps = token_logps(engine(ids).logits, ids)
            loss = -F.logsigmoid(0.1 * (logps[:n] - logps[n:])).mean()
            engine.backward(loss)
            engine.step()
    """,
    "ones_like_gradient": """
        import torch
        import torch.nn.functional as F

        for good, bad in loader:
            rewards = reward_model(torch.cat([good, bad]))
            loss = -F.logsigmoid(rewards[: len(good)] - rewards[len(good):])
            loss.backward(torch.ones_like(loss))
    """,
    "sum_over_last_dim_of_a_per_pair_vector": """
        import torch
        import torch.nn.functional as F

        for good, bad in loader:
            rewards = reward_model(torch.cat([good, bad]))
            per_pair = -F.logsigmoid(rewards[: len(good)] - rewards[len(good):])
            per_pair.sum(-1).backward()
            per_pair.mean(0).backward()
    """,
    "single_sample_indexed": """
        import torch
        import torch.nn.functional as F

        for good, bad in loader:
            rewards = reward_model(torch.cat([good, bad]))
            n = len(good)
            per_pair = -F.logsigmoid(rewards[:n] - rewards[n:])
            per_pair[0].backward(retain_graph=True)
            per_pair[-1].backward(retain_graph=True)
            per_pair[n - 1].backward()
    """,
    "rl_single_transition": """
        import torch
        import torch.nn.functional as F

        state = env.reset()
        for t in range(1000):
            value = critic(torch.as_tensor(state).unsqueeze(0))
            state, reward, done, _ = env.step(actor(state))
            target = reward + 0.99 * critic(torch.as_tensor(state).unsqueeze(0)).detach()
            loss = F.smooth_l1_loss(value, target)
            loss.backward()
    """,
    "cat_of_scalar_losses_summed": """
        import torch
        import torch.nn.functional as F

        for x, y in loader:
            a = F.cross_entropy(model(x), y)
            b = F.mse_loss(model(x), y)
            torch.cat([a.view(1), b.view(1)]).sum().backward()
    """,
    "nested_helper_that_reduces": """
        import torch
        import torch.nn.functional as F

        def train(model, loader, opt):
            def pair_loss(g, b):
                return -F.logsigmoid(model(g).sum(-1) - model(b).sum(-1)).mean()

            for good, bad in loader:
                loss = pair_loss(good, bad)
                loss.backward()
    """,
    "nested_helper_sees_the_local_criterion": """
        import torch.nn as nn

        crit = nn.MSELoss(reduction="none")

        def train(model, loader):
            crit = nn.MSELoss()

            def step(pred, y):
                return crit(pred, y)

            for x, y in loader:
                step(model(x), y).backward()
    """,
    "model_output_tuple_with_its_own_loss": """
        import torch.nn.functional as F

        for x, y in loader:
            logits, loss = model(x, y)
            loss.backward(retain_graph=True)
            out, aux_loss = model(x)
            (F.cross_entropy(out, y) + 0.1 * aux_loss).backward()
    """,
    "padding_that_crops": """
        import torch.nn.functional as F

        for x, y in loader:
            cropped = F.pad(model(x) - y, (0, -3))
            cropped.backward()
    """,
    "row_slices_that_leave_one_row": """
        import torch.nn.functional as F

        for good, bad in loader:
            rewards = reward_model(torch.cat([good, bad]))
            n = len(good)
            gap = rewards[:n] - rewards[n:]
            (-F.logsigmoid(gap[:1])).backward(retain_graph=True)
            (-F.logsigmoid(gap[-1:])).backward(retain_graph=True)
            (-F.logsigmoid(gap[3:4])).backward(retain_graph=True)
            (-F.logsigmoid(gap[n:1])).backward()
    """,
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(tmp_path, name):
    source, found = lint_project(tmp_path, {"train.py": FLAGGED[name]}, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert found, "a flagged case must mark at least one line"


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean(tmp_path, name):
    _, found = lint_project(tmp_path, {"train.py": CLEAN[name]}, "train.py", "GL003")
    assert [(f.line, f.message) for f in found] == []


def test_per_sample_message(tmp_path):
    """The condition is said: one value per sample, failing for batches larger than 1."""
    _, found = lint_project(tmp_path, {"train.py": FLAGGED["functions_engine_backward_fpad"]}, "train.py", "GL003")
    (finding,) = found
    assert PER_SAMPLE in finding.message
    assert "`engine.backward(loss)` starts from `loss`" in finding.message
