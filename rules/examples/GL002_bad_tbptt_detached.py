"""GL002 (bad): truncated BPTT that detaches the hidden state but still retains the graph.

`hidden.detach()` cuts the link to the previous chunk, so no later backward reaches this chunk's
graph; `retain_graph=True` is left over from before the detach was added.
"""
import torch
from torch import nn

torch.manual_seed(0)
rnn = nn.RNN(3, 5, batch_first=True)
head = nn.Linear(5, 1)
optimizer = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=1e-2)
chunks = [(torch.randn(2, 4, 3), torch.randn(2, 4, 1)) for _ in range(4)]

hidden = torch.zeros(1, 2, 5)
for inputs, targets in chunks:
    hidden = hidden.detach()
    output, hidden = rnn(inputs, hidden)
    loss = nn.functional.mse_loss(head(output), targets)
    optimizer.zero_grad()
    loss.backward(retain_graph=True)
    optimizer.step()
