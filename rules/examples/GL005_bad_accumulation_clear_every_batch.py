"""GL005 (bad): gradient accumulation whose clear runs on every micro-batch.

The step runs every `accumulation_steps` batches, but `optimizer.zero_grad()` at the top of every
iteration throws away what the earlier micro-batches accumulated: each step uses only the last
batch, scaled down by 1 / accumulation_steps.
"""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
accumulation_steps = 4
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(8)]

for i, (inputs, targets) in enumerate(data):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(inputs), targets) / accumulation_steps
    loss.backward()
    if (i + 1) % accumulation_steps == 0:
        optimizer.step()
