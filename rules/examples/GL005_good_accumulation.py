"""GL005 (good): gradient accumulation with the clear inside the same gate as the step, right
after it: every micro-batch's gradients reach the step."""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
accumulation_steps = 4
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(8)]

for i, (inputs, targets) in enumerate(data):
    loss = torch.nn.functional.mse_loss(model(inputs), targets) / accumulation_steps
    loss.backward()
    if (i + 1) % accumulation_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
