"""GL007 (bad): an accuracy-style loss computed from argmax has no graph, so it is made a leaf.

The backward now runs without error, but it starts from a leaf: no parameter gets a gradient and
the optimizer step changes nothing.
"""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(10, 3)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
batches = [(torch.randn(16, 10), torch.randint(0, 3, (16,))) for _ in range(3)]

for inputs, labels in batches:
    predictions = model(inputs).argmax(dim=1)
    loss = (predictions != labels).float().mean()
    loss.requires_grad = True
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(loss.item(), model.weight.grad)
