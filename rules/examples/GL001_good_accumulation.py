"""GL001 (good): gradient accumulation, stepping and clearing every `accumulation_steps` batches.

The gradients of two batches are summed on purpose; the step and the clear are gated by the same
condition, so no step ever sees gradients an earlier step already applied.
"""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
accumulation_steps = 2
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(6)]

for i, (inputs, targets) in enumerate(data):
    loss = torch.nn.functional.mse_loss(model(inputs), targets) / accumulation_steps
    loss.backward()
    if (i + 1) % accumulation_steps == 0:
        optimizer.step()
    if (i + 1) % accumulation_steps == 0:
        optimizer.zero_grad()
