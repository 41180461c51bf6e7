"""GL008 carried-graph-state: realistic flagged and clean recurrent training code.

Lines that must be reported carry a `# GL008` comment; every other line must stay clean (and
GL006/GL007 must not fire on them).
"""

from __future__ import annotations

import textwrap

import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options

CODES = ("GL006", "GL007", "GL008")


def _lint(source: str, **options):
    return lint_options(source, "train.py", AnalysisOptions(**options), codes=list(CODES))


def _marked(source: str):
    return [(n, "GL008") for n, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# GL008")]


FLAGGED = {
    "retain_by_a_flag_with_a_step_each_iteration": """
        import torch
        from torch import nn

        def train(cell, head, stream, targets, optimizer, keep):
            h = torch.zeros(2, 8)
            for x, y in zip(stream, targets):
                h = cell(x, h)
                loss = nn.functional.mse_loss(head(h), y)
                optimizer.zero_grad()
                loss.backward(retain_graph=keep)  # GL008
                optimizer.step()
    """,
    "word_lm_without_repackage": """
        def train(model, train_data, bptt, criterion, optimizer, ntokens, batch_size):
            model.train()
            hidden = model.init_hidden(batch_size)
            for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
                data, targets = get_batch(train_data, i)
                model.zero_grad()
                output, hidden = model(data, hidden)
                loss = criterion(output.view(-1, ntokens), targets)
                loss.backward()  # GL008
                optimizer.step()
    """,
    "lstm_module_level_script": """
        import torch
        from torch import nn

        lstm = nn.LSTM(10, 20)
        head = nn.Linear(20, 1)
        opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()))
        state = (torch.zeros(1, 4, 20), torch.zeros(1, 4, 20))
        for chunk, target in chunks:
            out, state = lstm(chunk, state)
            loss = ((head(out[-1]) - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()  # GL008
            opt.step()
    """,
    "retain_graph_workaround": """
        def train(model, loader, optimizer, criterion):
            hidden = None
            for x, y in loader:
                out, hidden = model(x, hidden)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward(retain_graph=True)  # GL008
                optimizer.step()
    """,
    "gru_cell_time_steps": """
        import torch

        def train(cell, readout, seq, targets, optimizer):
            h = torch.zeros(1, 32)
            for t in range(seq.size(0)):
                h = cell(seq[t], h)
                loss = (readout(h) - targets[t]).pow(2).mean()
                optimizer.zero_grad()
                loss.backward()  # GL008
                optimizer.step()
    """,
    "hand_written_rnn": """
        import torch

        W_xh = torch.randn(8, 16, requires_grad=True)
        W_hh = torch.randn(16, 16, requires_grad=True)
        h = torch.zeros(1, 16)
        for x, y in stream:
            h = torch.tanh(x @ W_xh + h @ W_hh)
            loss = ((h.sum() - y) ** 2)
            loss.backward()  # GL008
            with torch.no_grad():
                W_xh -= 0.01 * W_xh.grad
                W_hh -= 0.01 * W_hh.grad
                W_xh.grad.zero_()
                W_hh.grad.zero_()
    """,
    "trainer_self_hidden": """
        class Trainer:
            def __init__(self, model, optimizer, criterion):
                self.model, self.optimizer, self.criterion = model, optimizer, criterion
                self.hidden = model.init_hidden(16)

            def train_epoch(self, loader):
                for x, y in loader:
                    out, self.hidden = self.model(x, self.hidden)
                    loss = self.criterion(out, y)
                    self.optimizer.zero_grad()
                    loss.backward()  # GL008
                    self.optimizer.step()
    """,
    "rl_recurrent_policy_per_step": """
        import torch

        def train(policy, env, optimizer, steps):
            obs = env.reset()
            h = policy.initial_state()
            for step in range(steps):
                logits, value, h = policy(torch.as_tensor(obs), h)
                dist = torch.distributions.Categorical(logits=logits)
                action = dist.sample()
                obs, reward, done, _ = env.step(action.item())
                loss = -dist.log_prob(action) * reward + (value - reward) ** 2
                optimizer.zero_grad()
                loss.backward()  # GL008
                optimizer.step()
                if done:
                    obs = env.reset()
                    h = policy.initial_state()
    """,
    "seq2seq_decoder_hidden_across_batches": """
        def train(encoder, decoder, batches, optimizer, criterion):
            dec_hidden = decoder.init_hidden()
            for src, tgt in batches:
                enc_out, _ = encoder(src)
                out, dec_hidden = decoder(tgt[:-1], dec_hidden, enc_out)
                loss = criterion(out.flatten(0, 1), tgt[1:].flatten())
                optimizer.zero_grad()
                loss.backward()  # GL008
                optimizer.step()
    """,
    "accumulated_loss_backward_every_step": """
        def train(model, loader, optimizer, criterion):
            total = 0
            for x, y in loader:
                total = total + criterion(model(x), y)
                optimizer.zero_grad()
                total.backward()  # GL008
                optimizer.step()
    """,
    "transformer_xl_memory": """
        def train(model, loader, optimizer):
            mems = None
            for batch in loader:
                loss, mems = model(batch, mems)
                optimizer.zero_grad()
                loss.backward()  # GL008
                optimizer.step()
    """,
    "while_loop_stream": """
        def train(model, stream, optimizer, criterion):
            hidden = model.init_hidden(1)
            while stream.has_next():
                x, y = stream.next()
                out, hidden = model(x, hidden)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward()  # GL008
                optimizer.step()
    """,
    "epochs_and_batches_nested": """
        def train(model, loader, optimizer, criterion, epochs):
            hidden = model.init_hidden(32)
            for epoch in range(epochs):
                for x, y in loader:
                    output, hidden = model(x, hidden)
                    loss = criterion(output, y)
                    optimizer.zero_grad()
                    loss.backward()  # GL008
                    optimizer.step()
    """,
    "scaler_backward": """
        import torch

        def train(model, loader, optimizer, criterion, scaler):
            hidden = model.init_hidden(8)
            for x, y in loader:
                with torch.autocast("cuda"):
                    out, hidden = model(x, hidden)
                    loss = criterion(out, y)
                optimizer.zero_grad()
                scaler.scale(loss).backward()  # GL008
                scaler.step(optimizer)
                scaler.update()
    """,
    "conditional_reset_only_on_done": """
        def train(agent, env, optimizer, steps):
            state = env.reset()
            memory = agent.init_memory()
            for t in range(steps):
                action, log_prob, memory = agent.act(state, memory)
                state, reward, done, _ = env.step(action)
                loss = -log_prob * reward
                optimizer.zero_grad()
                loss.backward()  # GL008
                optimizer.step()
                if done:
                    memory = agent.init_memory()
                    state = env.reset()
    """,
    "stateful_char_rnn": """
        import torch
        import torch.nn.functional as F

        def train(rnn, data, optimizer, seq_len):
            hidden = torch.zeros(1, 1, 128)
            for start in range(0, len(data) - seq_len, seq_len):
                inp = data[start:start + seq_len]
                target = data[start + 1:start + seq_len + 1]
                output, hidden = rnn(inp.unsqueeze(1), hidden)
                loss = F.cross_entropy(output.squeeze(1), target)
                optimizer.zero_grad()
                loss.backward()  # GL008
                optimizer.step()
    """,
    "lightning_free_function_loop": """
        def fit(net, batches, opt, loss_fn):
            carry = net.zero_state()
            for xb, yb in batches:
                pred, carry = net(xb, carry)
                loss = loss_fn(pred, yb)
                opt.zero_grad()
                loss.backward(retain_graph=True)  # GL008
                opt.step()
    """,
    "module_keeps_hidden_on_self": """
        import torch
        from torch import nn

        class Tagger(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(10, 20)
                self.out = nn.Linear(20, 5)
                self.hidden = None

            def forward(self, x):
                y, self.hidden = self.lstm(x, self.hidden)
                return self.out(y)

        model = Tagger()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in data:
            scores = model(x)
            loss = nn.functional.cross_entropy(scores.flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()  # GL008
            opt.step()
    """,
}

CLEAN = {
    "word_lm_repackage_hidden": """
        import torch

        def repackage_hidden(h):
            if isinstance(h, torch.Tensor):
                return h.detach()
            else:
                return tuple(repackage_hidden(v) for v in h)

        def train(model, train_data, bptt, criterion, optimizer, ntokens, batch_size):
            hidden = model.init_hidden(batch_size)
            for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
                data, targets = get_batch(train_data, i)
                model.zero_grad()
                hidden = repackage_hidden(hidden)
                output, hidden = model(data, hidden)
                loss = criterion(output.view(-1, ntokens), targets)
                loss.backward()
                optimizer.step()
    """,
    "repackage_hidden_imported_from_another_module": """
        import torch.nn as nn
        from rnn_utils import repackage_hidden
        from . import state_utils

        def train(rnn, head, stream, target, optimizer):
            hidden = torch.zeros(1, 3, 12)
            cell = torch.zeros(1, 3, 12)
            for i in range(0, 50, 10):
                hidden = repackage_hidden(hidden)
                cell = state_utils.detach_state(cell)
                out, (hidden, cell) = rnn(stream[i:i + 10], (hidden, cell))
                loss = nn.functional.mse_loss(head(out), target[i:i + 10])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "full_bptt_in_chunks_retaining_all_but_the_last": """
        def train(cell, head, sequences, optimizer, chunk):
            for xs, ys in sequences:
                h = torch.zeros(2, 8)
                optimizer.zero_grad()
                n_chunks = xs.size(0) // chunk
                for c in range(n_chunks):
                    loss = 0
                    for t in range(c * chunk, (c + 1) * chunk):
                        h = cell(xs[t], h)
                        loss = loss + nn.functional.mse_loss(head(h), ys[t])
                    loss.backward(retain_graph=c < n_chunks - 1)
                optimizer.step()
    """,
    "detach_each_iteration": """
        def train(model, loader, optimizer, criterion):
            hidden = model.init_hidden(4)
            for x, y in loader:
                hidden = hidden.detach()
                out, hidden = model(x, hidden)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "lstm_tuple_detach": """
        def train(lstm, head, chunks, opt):
            state = None
            for chunk, target in chunks:
                out, state = lstm(chunk, state)
                loss = ((head(out[-1]) - target) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                state = tuple(s.detach() for s in state)
    """,
    "detach_in_place": """
        def train(model, loader, optimizer, criterion):
            h = model.init_hidden(4)
            for x, y in loader:
                h.detach_()
                out, h = model(x, h)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "data_attribute": """
        def train(model, loader, optimizer, criterion):
            h = model.init_hidden(4)
            for x, y in loader:
                out, h = model(x, h)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                h = h.data
    """,
    "state_recreated_per_batch": """
        def train(model, loader, optimizer, criterion):
            for x, y in loader:
                hidden = model.init_hidden(x.size(1))
                out, hidden = model(x, hidden)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "one_backward_after_time_loop": """
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
    "generation_loop": """
        import torch

        def generate(model, start, steps):
            hidden = model.init_hidden(1)
            inp = start
            words = []
            with torch.no_grad():
                for _ in range(steps):
                    out, hidden = model(inp, hidden)
                    inp = torch.multinomial(out.exp(), 1)
                    words.append(inp.item())
            return words
    """,
    "evaluation_loop_no_backward": """
        def evaluate(model, data, criterion):
            hidden = model.init_hidden(10)
            total = 0.0
            for x, y in data:
                out, hidden = model(x, hidden)
                total += criterion(out, y).item()
            return total
    """,
    "hidden_under_no_grad": """
        import torch

        def train(encoder, head, loader, optimizer, criterion):
            memory = encoder.init_memory()
            for x, y in loader:
                with torch.no_grad():
                    feats, memory = encoder(x, memory)
                loss = criterion(head(feats), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "forward_detaches_inside": """
        import torch
        from torch import nn

        class StatefulLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.GRU(32, 64)
                self.out = nn.Linear(64, 100)

            def forward(self, x, h):
                if h is not None:
                    h = h.detach()
                y, h = self.rnn(x, h)
                return self.out(y), h

        model = StatefulLM()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        h = None
        for x, y in batches:
            logits, h = model(x, h)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    """,
    "module_state_reset_each_batch": """
        import torch
        from torch import nn

        class Tagger(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(10, 20)
                self.out = nn.Linear(20, 5)
                self.hidden = None

            def init_hidden(self):
                self.hidden = None

            def forward(self, x):
                y, self.hidden = self.lstm(x, self.hidden)
                return self.out(y)

        model = Tagger()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in data:
            model.init_hidden()
            scores = model(x)
            loss = nn.functional.cross_entropy(scores.flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    """,
    "module_detaches_its_state": """
        import torch
        from torch import nn

        class Tagger(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(10, 20)
                self.out = nn.Linear(20, 5)
                self.hidden = None

            def forward(self, x):
                y, hidden = self.lstm(x, self.hidden)
                self.hidden = tuple(h.detach() for h in hidden)
                return self.out(y)

        model = Tagger()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in data:
            scores = model(x)
            loss = nn.functional.cross_entropy(scores.flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    """,
    "module_keeps_attention_for_plotting": """
        import torch
        from torch import nn

        class Attn(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Linear(16, 16)
                self.weights = None

            def forward(self, q, k):
                scores = self.proj(q) @ k.transpose(-1, -2)
                self.weights = scores.softmax(-1)
                return self.weights @ k

        model = Attn()
        opt = torch.optim.Adam(model.parameters())
        for q, k, target in data:
            loss = (model(q, k) - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    """,
    "tbptt_backward_every_k_then_detach": """
        def train(cell, head, seq, targets, optimizer, k):
            h = cell.init_state()
            loss = 0
            for t in range(seq.size(0)):
                h = cell(seq[t], h)
                loss = loss + criterion(head(h), targets[t])
                if (t + 1) % k == 0:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    h = h.detach()
                    loss = 0
    """,
    "gan_fresh_fake_each_iteration": """
        import torch

        for real in loader:
            z = torch.randn(real.size(0), 100)
            fake = G(z)
            d_loss = bce(D(real), ones) + bce(D(fake.detach()), zeros)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = bce(D(fake), ones)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
    """,
    "rl_episode_backward_after_rollout": """
        import torch

        def train(policy, env, optimizer, episodes):
            for episode in range(episodes):
                obs = env.reset()
                h = policy.initial_state()
                log_probs, rewards = [], []
                done = False
                while not done:
                    logits, h = policy(torch.as_tensor(obs), h)
                    dist = torch.distributions.Categorical(logits=logits)
                    action = dist.sample()
                    log_probs.append(dist.log_prob(action))
                    obs, reward, done, _ = env.step(action.item())
                    rewards.append(reward)
                loss = -(torch.stack(log_probs) * torch.tensor(rewards)).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "a2c_n_step_buffers_cleared": """
        def train(model, env, optimizer, steps, n):
            state = env.reset()
            log_probs, values, rewards = [], [], []
            for t in range(steps):
                dist, value = model(state)
                action = dist.sample()
                state, reward, done, _ = env.step(action)
                log_probs.append(dist.log_prob(action))
                values.append(value)
                rewards.append(reward)
                if len(rewards) == n:
                    loss = compute_loss(log_probs, values, rewards)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    log_probs, values, rewards = [], [], []
    """,
    "meta_learning_create_graph": """
        import torch

        def inner_loop(model, params, x, y, steps, lr):
            for _ in range(steps):
                loss = model.loss(x, y, params)
                grads = torch.autograd.grad(loss, params, create_graph=True)
                params = [p - lr * g for p, g in zip(params, grads)]
            return params
    """,
    "data_carried_not_graph": """
        def train(model, loader, optimizer, criterion, device):
            for step, (x, y) in enumerate(loader):
                x = x.to(device)
                y = y.to(device)
                out = model(x)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
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


def test_error_without_retain_and_warning_with_it():
    (plain,) = _lint(textwrap.dedent(FLAGGED["word_lm_without_repackage"]))
    assert plain.severity == "error" and plain.name == "carried-graph-state"
    assert "`hidden`" in plain.message and "second time" in plain.message
    (retained,) = _lint(textwrap.dedent(FLAGGED["retain_graph_workaround"]))
    assert retained.severity == "warning"
    assert "retain_graph" in retained.message


FULL_BPTT = """
    hidden = torch.zeros(2, 5)
    optimizer.zero_grad()
    for inputs, targets in chunks:
        hidden = cell(inputs, hidden)
        loss = F.mse_loss(head(hidden), targets)
        loss.backward(retain_graph=True)
    optimizer.step()
"""


def test_retained_carried_state_feeding_one_step_after_the_loop_is_full_bptt():
    # every backward serves the one step after the loop: correct (if quadratic), so silent
    assert _lint(textwrap.dedent(FULL_BPTT)) == []
    # the same with the step inside the loop: the graphs outlive the steps they fed
    stepping = FULL_BPTT.replace("        loss.backward(retain_graph=True)\n",
                                 "        loss.backward(retain_graph=True)\n        optimizer.step()\n")
    assert [(f.line, f.severity) for f in _lint(textwrap.dedent(stepping))] == [(7, "warning")]



MANUAL_BPTT = """
    h = torch.zeros(2, 8)
    for x, y in chunks:
        h = torch.tanh(x @ W_xh + h @ W_hh)
        loss = ((h @ W_hy - y) ** 2).mean()
        loss.backward(retain_graph=True)
    with torch.no_grad():
        for p in params:
            p -= 0.01 * p.grad
            p.grad = None
"""

MANUAL_TBPTT_NO_DETACH = """
    h = torch.zeros(2, 8)
    for x, y in chunks:
        h = torch.tanh(x @ W_xh + h @ W_hh)
        loss = ((h @ W_hy - y) ** 2).mean()
        loss.backward(retain_graph=True)
        with torch.no_grad():
            for p in params:
                p -= 0.01 * p.grad
                p.grad = None
"""


def test_a_hand_written_update_inside_the_loop_is_a_step_the_retained_graph_outlives():
    # full BPTT with the update after the loop: silent, as with an optimizer
    assert _lint(textwrap.dedent(MANUAL_BPTT)) == []
    # the update inside the loop (a second tester's b34c: the next backward walks into graphs
    # whose weights were updated in place) is reported as with `optimizer.step()` there
    found = _lint(textwrap.dedent(MANUAL_TBPTT_NO_DETACH))
    assert [(f.line, f.severity) for f in found] == [(6, "warning")]
