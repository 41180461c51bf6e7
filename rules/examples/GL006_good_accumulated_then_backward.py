"""GL006 (good): losses summed over micro-batches on purpose, then one backward walks them all."""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
micro_batches = [(torch.randn(4, 4), torch.randn(4, 1)) for _ in range(4)]

for step in range(3):
    total_loss = 0
    for inputs, targets in micro_batches:
        total_loss += nn.functional.mse_loss(model(inputs), targets) / len(micro_batches)
    optimizer.zero_grad()
    total_loss.backward()
    optimizer.step()
    print(step, total_loss.item())
