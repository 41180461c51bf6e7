"""GL002 (good): a GAN step that needs `retain_graph=True`.

The discriminator loss is computed on `fake` without detaching it, so its backward walks the
generator's graph; the generator loss then goes through the same `fake` again.
"""
import torch
from torch import nn

torch.manual_seed(0)
generator = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 4))
discriminator = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
bce = nn.BCEWithLogitsLoss()

for _ in range(4):
    real = torch.randn(16, 4)
    fake = generator(torch.randn(16, 2))

    opt_d.zero_grad()
    d_loss = bce(discriminator(real), torch.ones(16, 1)) + bce(discriminator(fake), torch.zeros(16, 1))
    d_loss.backward(retain_graph=True)
    opt_d.step()

    opt_g.zero_grad()
    g_loss = bce(discriminator(fake), torch.ones(16, 1))
    g_loss.backward()
    opt_g.step()
