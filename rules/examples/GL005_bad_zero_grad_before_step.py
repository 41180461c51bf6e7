"""GL005 (bad): zero_grad between the backward and the step.

`optimizer.zero_grad()` wipes the gradients `loss.backward()` just computed, so
`optimizer.step()` sees none (with set_to_none=True, the default, it skips every parameter):
the loss never goes down, and nothing raises.
"""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for inputs, targets in data:
    loss = torch.nn.functional.mse_loss(model(inputs), targets)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
