# Regression on a synthetic dataset; gradients are cleared after each update instead of before.
import torch
import torch.nn as nn

torch.manual_seed(0)
N, D = 4096, 20
X = torch.randn(N, D)
true_w = torch.randn(D, 1)
y = X @ true_w + 0.05 * torch.randn(N, 1)

model = nn.Sequential(nn.Linear(D, 64), nn.SiLU(), nn.Linear(64, 1))
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
loss_fn = nn.HuberLoss(delta=1.0)
opt.zero_grad(set_to_none=True)

for epoch in range(100):
    perm = torch.randperm(N)
    for i in range(0, N, 256):
        idx = perm[i:i + 256]
        loss = loss_fn(model(X[idx]), y[idx])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if epoch % 10 == 0:
        with torch.no_grad():
            print(epoch, loss_fn(model(X), y).item())
