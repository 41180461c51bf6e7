"""GL007 loss-made-leaf: realistic flagged and clean code.

Lines that must be reported carry a `# GL007` comment; every other line must stay clean (and
GL006/GL008 must not fire on them).
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
    return [(n, "GL007") for n, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# GL007")]


FLAGGED = {
    "detached_output_then_requires_grad_in_place": """
        def train(model, loader, optimizer, criterion):
            for x, y in loader:
                out = model(x).detach()
                loss = criterion(out, y)
                loss.requires_grad_()  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "requires_grad_attribute_on_argmax_loss": """
        def train(model, loader, optimizer):
            for x, y in loader:
                pred = model(x).argmax(dim=1)
                loss = (pred != y).float().mean()
                loss.requires_grad = True  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "tensor_of_item": """
        import torch

        def train(model, loader, optimizer, criterion):
            for x, y in loader:
                loss = criterion(model(x), y)
                loss = torch.tensor(loss.item(), requires_grad=True)  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "variable_of_data": """
        from torch.autograd import Variable

        def train(net, loader, optimizer, criterion):
            for inputs, targets in loader:
                outputs = net(inputs)
                loss = criterion(outputs, targets)
                loss = Variable(loss.data, requires_grad=True)  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "requires_grad_underscore_call": """
        def train(model, loader, optimizer, metric):
            for x, y in loader:
                score = metric(model(x).detach(), y)
                loss = 1 - score
                loss.requires_grad_()  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "numpy_loss_back_to_tensor": """
        import numpy as np
        import torch

        def train(model, loader, optimizer):
            for x, y in loader:
                out = model(x).detach().cpu().numpy()
                err = np.mean((out - y.numpy()) ** 2)
                loss = torch.tensor(err, requires_grad=True)  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "rl_reward_sum_as_loss": """
        import torch

        def train(policy, env, optimizer, episodes):
            for episode in range(episodes):
                obs = env.reset()
                rewards = []
                done = False
                while not done:
                    action = policy(torch.as_tensor(obs)).argmax().item()
                    obs, reward, done, _ = env.step(action)
                    rewards.append(reward)
                loss = torch.tensor(-sum(rewards), dtype=torch.float32, requires_grad=True)  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "scaled_leaf_then_backward": """
        import torch

        def step(model, batch, optimizer, criterion, accum: int = 4):
            loss = criterion(model(batch["x"]), batch["y"])
            loss = torch.tensor(loss.item(), requires_grad=True)  # GL007
            scaled = loss / accum
            scaled.backward()
            optimizer.step()
    """,
    "detach_requires_grad_chain": """
        def train(model, loader, optimizer, criterion):
            for x, y in loader:
                loss = criterion(model(x), y)
                loss = loss.detach().requires_grad_()  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "no_grad_forward_then_leaf": """
        import torch

        def train(model, loader, optimizer, criterion):
            for x, y in loader:
                with torch.no_grad():
                    out = model(x)
                loss = criterion(out, y)
                loss.requires_grad = True  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "module_level_script": """
        import torch

        for epoch in range(10):
            for images, masks in loader:
                preds = (net(images) > 0.5).float()
                dice = dice_coefficient(preds, masks)
                loss = torch.tensor(1.0 - dice, requires_grad=True)  # GL007
                opt.zero_grad()
                loss.backward()
                opt.step()
    """,
    "lightning_manual_leaf": """
        import torch
        import pytorch_lightning as pl

        class Model(pl.LightningModule):
            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                x, y = batch
                acc = self.accuracy(self(x), y)
                loss = torch.tensor(1.0 - acc, requires_grad=True, device=self.device)  # GL007
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
    """,
    "loss_parameter_made_leaf": """
        def update(optimizer, loss):
            loss.requires_grad = True  # GL007
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    """,
    "combined_leaf_losses": """
        import torch

        def train(model, loader, optimizer, criterion, reg_fn):
            for x, y in loader:
                ce = criterion(model(x), y).item()
                reg = reg_fn(model)
                loss = torch.tensor(ce, requires_grad=True)  # GL007
                total = loss * 2.0 + 1.0
                optimizer.zero_grad()
                total.backward()
                optimizer.step()
    """,
    "seq2seq_bleu_loss": """
        import torch

        def train(model, pairs, optimizer):
            for src, tgt in pairs:
                hyp = model.generate(src)
                bleu = compute_bleu(hyp, tgt)
                loss = torch.tensor(1.0 - bleu, requires_grad=True)  # GL007
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "autograd_grad_on_leaf": """
        import torch

        def train(model, loader, optimizer, criterion):
            for x, y in loader:
                loss = criterion(model(x), y)
                loss = torch.tensor(float(loss), requires_grad=True)  # GL007
                grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
                for p, g in zip(model.parameters(), grads):
                    p.grad = g
                optimizer.step()
    """,
    "while_loop_leaf": """
        step = 0
        while step < 100:
            out = model(next(batches))
            loss = out.max(dim=1).indices.float().mean()
            loss.requires_grad_(True)  # GL007
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    """,
}

CLEAN = {
    "defensive_requires_grad_on_a_loss_with_its_graph": """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), 0.1)
        for step in range(4):
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.requires_grad_(True)
            loss.backward()
            opt.step()
    """,
    "requires_grad_assigned_on_a_criterion_loss_with_its_graph": """
        def train(model, loader, optimizer, criterion):
            for x, y in loader:
                out = model(x)
                loss = criterion(out, y)
                loss.requires_grad = True
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "fgsm_input_requires_grad": """
        import torch.nn.functional as F

        def fgsm(model, data, target, epsilon):
            data.requires_grad = True
            output = model(data)
            loss = F.nll_loss(output, target)
            model.zero_grad()
            loss.backward()
            return data + epsilon * data.grad.sign()
    """,
    "pgd_delta_leaf": """
        import torch
        import torch.nn.functional as F

        def pgd(model, x, y, eps, alpha, steps):
            delta = torch.zeros_like(x, requires_grad=True)
            for _ in range(steps):
                loss = F.cross_entropy(model(x + delta), y)
                loss.backward()
                delta.data = (delta + alpha * delta.grad.sign()).clamp(-eps, eps)
                delta.grad.zero_()
            return delta.detach()
    """,
    "pgd_requires_grad_underscore": """
        import torch.nn.functional as F

        def attack(model, images, labels, eps, alpha, iters):
            adv = images.clone().detach()
            for _ in range(iters):
                adv.requires_grad_()
                loss = F.cross_entropy(model(adv), labels)
                loss.backward()
                adv = (adv + alpha * adv.grad.sign()).detach()
            return adv
    """,
    "saliency_map": """
        def saliency(model, image, label):
            model.eval()
            image = image.unsqueeze(0)
            image.requires_grad_()
            scores = model(image)
            score = scores[0, label]
            score.backward()
            return image.grad.abs().max(dim=1)[0]
    """,
    "unfreeze_parameters": """
        def finetune(model, loader, optimizer, criterion):
            for param in model.parameters():
                param.requires_grad = False
            for param in model.classifier.parameters():
                param.requires_grad = True
            for x, y in loader:
                loss = criterion(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "unfreeze_later_epochs": """
        def train(model, loader, optimizer, criterion, epochs):
            for epoch in range(epochs):
                if epoch == 5:
                    for p in model.backbone.parameters():
                        p.requires_grad_(True)
                for x, y in loader:
                    loss = criterion(model(x), y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
    """,
    "hand_made_linear_regression": """
        import torch

        w = torch.randn(3, 1, requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        for epoch in range(100):
            pred = x @ w + b
            loss = ((pred - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= 0.01 * w.grad
                b -= 0.01 * b.grad
                w.grad.zero_()
                b.grad.zero_()
    """,
    "autograd_tutorial": """
        import torch

        x = torch.ones(2, 2, requires_grad=True)
        y = x + 2
        z = y * y * 3
        out = z.mean()
        out.backward()
        print(x.grad)
    """,
    "tensor_from_data_requires_grad": """
        import torch

        a = torch.tensor([2.0, 3.0], requires_grad=True)
        b = torch.tensor([6.0, 4.0], requires_grad=True)
        Q = 3 * a ** 3 - b ** 2
        Q.sum().backward()
    """,
    "pinn_collocation_points": """
        import torch

        def train(net, optimizer, t_data, steps):
            t = torch.tensor(t_data, requires_grad=True)
            for _ in range(steps):
                u = net(t)
                du = torch.autograd.grad(u.sum(), t, create_graph=True)[0]
                loss = (du + u).pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "gradient_penalty_interpolates": """
        import torch

        def gradient_penalty(D, real, fake):
            alpha = torch.rand(real.size(0), 1, 1, 1)
            interp = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
            scores = D(interp)
            grads = torch.autograd.grad(scores.sum(), interp, create_graph=True)[0]
            return ((grads.norm(2, dim=1) - 1) ** 2).mean()
    """,
    "style_transfer_image_optimised": """
        import torch

        def transfer(content, style, model, steps):
            image = content.clone().requires_grad_(True)
            optimizer = torch.optim.LBFGS([image])
            for _ in range(steps):
                def closure():
                    optimizer.zero_grad()
                    loss = model(image, style)
                    loss.backward()
                    return loss
                optimizer.step(closure)
            return image
    """,
    "leaf_loss_combined_with_model_loss": """
        import torch

        def train(model, loader, optimizer, criterion, penalty):
            for x, y in loader:
                extra = torch.tensor(penalty(model), requires_grad=True)
                loss = criterion(model(x), y) + extra
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "deep_dream_input": """
        def dream(model, img, layer, steps, lr):
            img = img.detach().requires_grad_(True)
            for _ in range(steps):
                act = model.features[:layer](img)
                loss = act.norm()
                loss.backward()
                img.data += lr * img.grad.data
                img.grad.data.zero_()
            return img
    """,
    "embedding_inversion_leaf": """
        import torch

        def invert(generator, target, steps):
            z = torch.randn(1, 512, requires_grad=True)
            opt = torch.optim.Adam([z], lr=0.01)
            for _ in range(steps):
                loss = (generator(z) - target).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            return z
    """,
    "input_of_a_small_autograd_computation": """
        import torch

        def sensitivity(load_points):
            data = load_points("grid.npy")
            x = torch.tensor(data, requires_grad=True)
            y = torch.sin(x) * x ** 2
            y.sum().backward()
            return x.grad
    """,
    "zero_leaf_accumulator": """
        import torch

        def train(model, loader, optimizer, criterion):
            for batch in loader:
                loss = torch.tensor(0.0, requires_grad=True)
                for x, y in batch:
                    loss = loss + criterion(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    """,
    "requires_grad_false_is_not_a_leaf_made": """
        def train(model, loader, optimizer, criterion):
            for x, y in loader:
                loss = criterion(model(x), y)
                x.requires_grad_(False)
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


def test_message_and_severity():
    source = textwrap.dedent(FLAGGED["tensor_of_item"])
    (finding,) = _lint(source)
    assert finding.severity == "error"
    assert finding.name == "loss-made-leaf"
    assert "`loss`" in finding.message and "reaches no parameter" in finding.message
    assert finding.fix is None


def test_the_finding_names_the_line_of_the_backward_it_is_about():
    """`gradlint run` joins the finding to that backward, not to a nearer one (a GAN's other loss)."""
    source = textwrap.dedent("""
        def train(gen, critic, batches, gen_opt, critic_opt, bce):
            for real, noise in batches:
                fake = gen(noise)
                critic_loss = bce(critic(real), 1) + bce(critic(fake.detach()), 0)
                critic_loss = torch.tensor(critic_loss.item(), requires_grad=True)
                gen_loss = bce(critic(fake), 1)
                gen_opt.zero_grad()
                gen_loss.backward()
                gen_opt.step()
                critic_opt.zero_grad()
                critic_loss.backward()
                critic_opt.step()
    """)
    (finding,) = _lint(source)
    lines = source.splitlines()
    assert lines[finding.line - 1].strip().startswith("critic_loss = torch.tensor(")
    assert [lines[n - 1].strip() for n in finding.related] == ["critic_loss.backward()"]
