# Iteration-based training (no epochs) for a small autoencoder on random patches.
import itertools

import torch
import torch.nn as nn

device = "cuda" if torch.cuda.is_available() else "cpu"


class AE(nn.Module):
    def __init__(self, d=64, k=8):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, 32), nn.GELU(), nn.Linear(32, k))
        self.dec = nn.Sequential(nn.Linear(k, 32), nn.GELU(), nn.Linear(32, d))

    def forward(self, x):
        return self.dec(self.enc(x))


def patch_stream(batch=512, d=64):
    while True:
        yield torch.randn(batch, d)


model = AE().to(device)
opt = torch.optim.RMSprop(model.parameters(), lr=1e-3)
stream = patch_stream()
max_iters, it, best = 5000, 0, float("inf")
patience = 0

while True:
    x = next(stream).to(device)
    recon = model(x)
    loss = nn.functional.mse_loss(recon, x)
    loss.backward()  # expect: GL001
    opt.step()
    it += 1
    if loss.item() < best - 1e-4:
        best, patience = loss.item(), 0
    else:
        patience += 1
    if it >= max_iters or patience > 300:
        break

print("stopped after", it, "iterations; best", best)
_ = list(itertools.islice(stream, 0))
