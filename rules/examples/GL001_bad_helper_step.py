"""GL001 (bad): the loop calls a helper that runs the backward and steps, but nothing clears.

The finding is on the helper's call inside the loop: each call's `loss.backward()` adds to the
gradients the previous call's `optimizer.step()` already applied.
"""
import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]


def train_step(model, optimizer, inputs, targets):
    """One update on a batch; returns the loss for logging."""
    loss = torch.nn.functional.mse_loss(model(inputs), targets)
    loss.backward()
    optimizer.step()
    return loss.item()


for inputs, targets in data:
    train_step(model, optimizer, inputs, targets)
