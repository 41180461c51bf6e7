"""A loop that accumulates into its gradients on purpose (a test of accumulation): the `noqa`
silences the GL001 the authors reviewed, so it is in use and GL100 says nothing."""

import torch


def train(model: torch.nn.Module, loader, accumulate: bool) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for inputs, targets in loader:
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()  # noqa: GL001
        optimizer.step()
