"""Vanilla GAN on 2-D toy data where the discriminator loss is taken on the undetached fake
batch. The generator graph G(z) is traversed again by the generator loss, so the first
backward must keep it (retain_graph=True is required here)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def sample_ring(n, modes=8, radius=2.0, std=0.02):
    k = torch.randint(0, modes, (n,))
    angle = 2 * torch.pi * k.float() / modes
    centers = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return centers + std * torch.randn(n, 2)


G = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
D = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
opt_G = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
opt_D = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))

for it in range(20000):
    real = sample_ring(256)
    z = torch.randn(256, 16)
    fake = G(z)

    opt_D.zero_grad()
    d_real = D(real)
    d_fake = D(fake)
    d_loss = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    d_loss.backward(retain_graph=True)
    opt_D.step()

    opt_G.zero_grad()
    d_on_fake = D(fake)
    g_loss = F.binary_cross_entropy_with_logits(d_on_fake, torch.ones_like(d_on_fake))
    g_loss.backward()
    opt_G.step()

    if it % 1000 == 0:
        print(f"it {it}: d {d_loss.item():.3f} g {g_loss.item():.3f}")
