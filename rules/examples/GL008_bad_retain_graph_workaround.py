"""GL008 (bad, warning): `retain_graph=True` silences the second-backward error; the graph grows.

Every step's backward walks all earlier steps again (time per step grows) and keeps them alive; once
the optimizer has updated the weights in place, walking an earlier step's graph fails too ("one of
the variables needed for gradient computation has been modified by an inplace operation").
"""
import torch
from torch import nn

torch.manual_seed(0)
cell = nn.GRUCell(3, 8)
head = nn.Linear(8, 1)
optimizer = torch.optim.SGD(list(cell.parameters()) + list(head.parameters()), lr=1e-2)
stream = [(torch.randn(2, 3), torch.randn(2, 1)) for _ in range(6)]

h = torch.zeros(2, 8)
try:
    for x, y in stream:
        h = cell(x, h)
        loss = nn.functional.mse_loss(head(h), y)
        optimizer.zero_grad()
        loss.backward(retain_graph=True)
        optimizer.step()
except RuntimeError as error:
    print(f"training stopped: {error}")
