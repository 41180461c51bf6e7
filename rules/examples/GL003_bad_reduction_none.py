"""GL003 (bad): backward on a per-element loss from a criterion built with reduction='none'.

`criterion(...)` returns one loss per element, not a scalar, so `loss.backward()` without `gradient=`
raises "grad can be implicitly created only for scalar outputs". The error is caught here so the
script runs all its steps.
"""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
criterion = nn.MSELoss(reduction="none")
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(3)]

for inputs, targets in data:
    optimizer.zero_grad()
    loss = criterion(model(inputs), targets)
    try:
        loss.backward()
    except RuntimeError as error:
        print(f"backward failed: {error}")
    optimizer.step()
