"""A stale loop (GL001) whose script closes sys.stdout before it ends."""
import sys

import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(4):
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()
print("done")
sys.stdout.close()
