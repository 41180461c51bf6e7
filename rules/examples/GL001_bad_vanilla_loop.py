"""GL001 (bad): the loop steps the optimizer but never clears its gradients.

Every `loss.backward()` adds this batch's gradients to the ones `optimizer.step()` already applied,
so each step re-applies every earlier batch's gradients as well.
"""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = torch.nn.MSELoss()
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for inputs, targets in data:
    loss = loss_fn(model(inputs), targets)
    loss.backward()
    optimizer.step()
