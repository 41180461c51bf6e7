"""GL001 (bad): a GradScaler loop whose zero_grad only runs on the first iteration.

`scaler.step(optimizer)` steps `optimizer` every iteration, but `optimizer.zero_grad()` is guarded by
`if step == 0`, so from the second batch on the gradients of earlier batches are applied again.
"""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
scaler = torch.amp.GradScaler("cpu", enabled=False)
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for step, (inputs, targets) in enumerate(data):
    if step == 0:
        optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(inputs), targets)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
