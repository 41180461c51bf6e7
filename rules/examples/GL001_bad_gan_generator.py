"""GL001 (bad): a GAN loop that clears the discriminator but forgets the generator.

The discriminator is cleared before each of its backward passes; the generator's optimizer is never
cleared, so every `g_loss.backward()` piles onto gradients `opt_g.step()` already used.
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
    noise = torch.randn(16, 2)

    opt_d.zero_grad()
    fake = generator(noise)
    d_loss = bce(discriminator(real), torch.ones(16, 1)) + bce(discriminator(fake.detach()), torch.zeros(16, 1))
    d_loss.backward()
    opt_d.step()

    g_loss = bce(discriminator(fake), torch.ones(16, 1))
    g_loss.backward()
    opt_g.step()
