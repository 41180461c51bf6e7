"""GL002 (good): backpropagation through the whole sequence with a carried hidden state.

`hidden` is not detached, so each chunk's backward walks back through the previous chunks' graphs:
`retain_graph=True` is what makes the second iteration work.
"""
import torch
from torch import nn

torch.manual_seed(0)
cell = nn.RNNCell(3, 5)
head = nn.Linear(5, 1)
optimizer = torch.optim.SGD(list(cell.parameters()) + list(head.parameters()), lr=1e-2)
steps = [(torch.randn(2, 3), torch.randn(2, 1)) for _ in range(4)]

hidden = torch.zeros(2, 5)
optimizer.zero_grad()
for inputs, targets in steps:
    hidden = cell(inputs, hidden)
    loss = nn.functional.mse_loss(head(hidden), targets)
    loss.backward(retain_graph=True)
optimizer.step()
