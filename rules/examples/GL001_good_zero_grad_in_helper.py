"""GL001 (good): the gradients are cleared by a helper, after the step, via `p.grad = None`."""
import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]


def clear_gradients(module):
    """Drop every parameter's gradient (cheaper than zeroing)."""
    for p in module.parameters():
        p.grad = None


for inputs, targets in data:
    loss = torch.nn.functional.mse_loss(model(inputs), targets)
    loss.backward()
    optimizer.step()
    clear_gradients(model)
