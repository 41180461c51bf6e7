"""Elastic Weight Consolidation on permuted MNIST: a diagonal Fisher estimated from
per-sample gradients after each task, then a quadratic penalty while training the next task."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from permuted_mnist import task_loader  # local module, not shown


def make_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                         nn.Linear(400, 10))


def fisher_diagonal(model, loader, n_samples=600):
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    model.eval()
    seen = 0
    for x, _ in loader:
        for xi in x:
            model.zero_grad()
            log_probs = F.log_softmax(model(xi.unsqueeze(0)), dim=1)
            label = log_probs.argmax(1)
            F.nll_loss(log_probs, label).backward()
            for n, p in model.named_parameters():
                fisher[n] += p.grad.detach() ** 2
            seen += 1
            if seen >= n_samples:
                return {n: f / seen for n, f in fisher.items()}
    return {n: f / max(seen, 1) for n, f in fisher.items()}


def ewc_penalty(model, fishers, anchors):
    total = 0.0
    for fisher, anchor in zip(fishers, anchors):
        for n, p in model.named_parameters():
            total = total + (fisher[n] * (p - anchor[n]) ** 2).sum()
    return total


model = make_mlp()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
fishers, anchors, lam = [], [], 5000.0
for task in range(5):
    loader = task_loader(task, batch_size=128)
    model.train()
    for epoch in range(5):
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            if fishers:
                loss = loss + lam / 2 * ewc_penalty(model, fishers, anchors)
            loss.backward()
            optimizer.step()
    fishers.append(fisher_diagonal(model, loader))
    anchors.append({n: p.detach().clone() for n, p in model.named_parameters()})
