"""GL002 (bad): a training loop that retains every iteration's graph "just in case".

Each iteration builds a new graph from a fresh batch, and only one backward walks it. The retained
graph is never used again; it only holds activations until `loss` is rebound.
"""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
criterion = nn.MSELoss()
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for inputs, targets in data:
    optimizer.zero_grad()
    loss = criterion(model(inputs), targets)
    loss.backward(retain_graph=True)
    optimizer.step()
