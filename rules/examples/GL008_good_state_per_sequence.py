"""GL008 (good): a fresh state per sequence, one backward after the time loop."""
import torch
from torch import nn

torch.manual_seed(0)
cell = nn.GRUCell(3, 8)
head = nn.Linear(8, 1)
optimizer = torch.optim.SGD(list(cell.parameters()) + list(head.parameters()), lr=1e-2)
sequences = [(torch.randn(6, 2, 3), torch.randn(6, 2, 1)) for _ in range(3)]

for inputs, targets in sequences:
    h = torch.zeros(2, 8)
    loss = 0
    for t in range(inputs.size(0)):
        h = cell(inputs[t], h)
        loss = loss + nn.functional.mse_loss(head(h), targets[t])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
