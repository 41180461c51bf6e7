"""GL004 (bad): mixed-precision loop that clips the scaled gradients.

`scaler.scale(loss).backward()` leaves every gradient multiplied by the loss scale (65536 at the
start), so `clip_grad_norm_` compares a norm 65536 times too large with max_norm=1.0 and shrinks
every update by that factor: the model barely moves, and nothing raises.
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
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    scaler.step(optimizer)
    scaler.update()
