"""GL001 (good): LBFGS re-evaluates the loss through a closure that clears the gradients first.

The closure's `zero_grad`/`backward` run inside `optimizer.step(closure)`, so every evaluation
starts from clean gradients.
"""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
inputs, targets = torch.randn(16, 3), torch.randn(16, 1)


def closure():
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(inputs), targets)
    loss.backward()
    return loss


for _ in range(3):
    optimizer.step(closure)
