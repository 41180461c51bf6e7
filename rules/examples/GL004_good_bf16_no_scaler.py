"""GL004 (good): bfloat16 autocast needs no GradScaler, so the gradients are never scaled and the
clip between the backward and the step sees their true norm; a second clip with an infinite
threshold only measures the norm for the log."""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for step, (inputs, targets) in enumerate(data):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.mse_loss(model(inputs).float(), targets)
    optimizer.zero_grad()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    after = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    print(f"step {step}: loss {loss.item():.4f} norm {norm:.4f} -> {after:.4f}")
