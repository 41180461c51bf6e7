"""GL004 (good): mixed precision with the gradients unscaled before they are clipped.

`scaler.unscale_(optimizer)` divides the gradients by the loss scale in place, so the clip sees
the true norm; `scaler.step` then knows they are unscaled and does not divide again.
"""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = torch.amp.GradScaler("cpu")
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for inputs, targets in data:
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.mse_loss(model(inputs).float(), targets)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    scaler.step(optimizer)
    scaler.update()
