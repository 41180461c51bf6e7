"""GL005 (good): a probe backward whose gradients are read (per-layer norms for a log) before they
are cleared; the training backward after the clear is the one the step uses."""
import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for inputs, targets in data:
    probe = model(inputs).abs().mean()
    probe.backward()
    probe_norms = {name: p.grad.norm().item() for name, p in model.named_parameters()}
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(inputs), targets)
    loss.backward()
    optimizer.step()
    print(probe_norms)
