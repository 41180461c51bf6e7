"""GL006 (bad): the epoch's running loss accumulates the loss tensor itself.

`running_loss += loss` keeps every batch's autograd graph reachable from `running_loss` until the
epoch ends: the printed number is right, but memory grows with every batch.
"""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
criterion = nn.MSELoss()
batches = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(6)]

for epoch in range(2):
    running_loss = 0.0
    for inputs, targets in batches:
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        running_loss += loss
    print(f"epoch {epoch}: {running_loss / len(batches):.4f}")
