"""GL002 (good): two task losses on a shared trunk, each with its own backward.

`loss_a.backward()` must keep the trunk's graph, because `loss_b.backward()` walks it again.
"""
import torch
from torch import nn

torch.manual_seed(0)
trunk = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
head_a = nn.Linear(16, 3)
head_b = nn.Linear(16, 1)
params = list(trunk.parameters()) + list(head_a.parameters()) + list(head_b.parameters())
optimizer = torch.optim.SGD(params, lr=0.05)

for _ in range(4):
    x = torch.randn(8, 6)
    labels = torch.randint(0, 3, (8,))
    targets = torch.randn(8, 1)
    features = trunk(x)
    loss_a = nn.functional.cross_entropy(head_a(features), labels)
    loss_b = nn.functional.mse_loss(head_b(features), targets)
    optimizer.zero_grad()
    loss_a.backward(retain_graph=True)
    loss_b.backward()
    optimizer.step()
