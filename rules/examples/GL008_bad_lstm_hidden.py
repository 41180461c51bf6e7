"""GL008 (bad): the LSTM state of one chunk is fed into the next chunk with its graph.

The second `loss.backward()` walks back through the first chunk's graph, whose buffers the first
backward freed: "Trying to backward through the graph a second time".
"""
import torch
from torch import nn

torch.manual_seed(0)
lstm = nn.LSTM(3, 8)
head = nn.Linear(8, 1)
optimizer = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-2)
chunks = [(torch.randn(5, 2, 3), torch.randn(5, 2, 1)) for _ in range(4)]

state = (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))
try:
    for inputs, targets in chunks:
        output, state = lstm(inputs, state)
        loss = nn.functional.mse_loss(head(output), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
except RuntimeError as error:  # the second chunk's backward fails
    print(f"training stopped: {error}")
