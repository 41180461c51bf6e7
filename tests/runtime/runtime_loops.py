"""Small training loops the runtime tests run in-process, traced and untraced."""

from __future__ import annotations

import torch
from torch import nn


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def batches(count: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 16, generator=generator), torch.randint(0, 4, (8,), generator=generator))
            for _ in range(count)]


def train_mlp(steps: int = 200, retain: bool = False, clear: bool = True) -> nn.Module:
    """Adam on an MLP; `retain` keeps each graph (needlessly), `clear=False` forgets zero_grad."""
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for inputs, labels in batches(steps):
        if clear:
            optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), labels)
        loss.backward(retain_graph=retain)
        optimizer.step()
    return model


def state_of(model: nn.Module) -> list:
    return [p.detach().clone() for p in model.parameters()]
