"""GL004 (good): gradient accumulation that clips the summed gradients right before the step.

The clip is inside the same `% accumulation_steps` gate as the step, after the last micro-batch's
backward and before `optimizer.step()`.
"""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
accumulation_steps = 2
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(6)]

for i, (inputs, targets) in enumerate(data):
    loss = torch.nn.functional.mse_loss(model(inputs), targets) / accumulation_steps
    loss.backward()
    if (i + 1) % accumulation_steps == 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
