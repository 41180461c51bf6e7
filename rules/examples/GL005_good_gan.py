"""GL005 (good): a GAN loop. The discriminator's backward is used by its own step; the generator's
clear after it drops what that backward left in the generator, before the generator's backward."""
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
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad()
    g_loss = bce(discriminator(generator(torch.randn(16, 2))), torch.ones(16, 1))
    g_loss.backward()
    opt_g.step()
