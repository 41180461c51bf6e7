"""WGAN-GP on 64x64 images.

The gradient penalty really needs create_graph=True (its own backward goes through the
critic's input gradients). The critic loss backward with retain_graph=True does not:
the fake batch is detached and the generator step builds a fresh graph.
"""
import torch
import torch.autograd as autograd
import torch.nn as nn

from models import Critic, Generator  # local module, not shown
from data import infinite_loader  # local module, not shown

LAMBDA_GP, N_CRITIC, Z_DIM = 10.0, 5, 128
device = "cuda"

G, D = Generator(Z_DIM).to(device), Critic().to(device)
opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.9))
opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
loader = infinite_loader(batch_size=64)


def gradient_penalty(critic, real, fake):
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device)
    interp = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(interp)
    grads = autograd.grad(outputs=scores, inputs=interp, grad_outputs=torch.ones_like(scores),
                          create_graph=True, retain_graph=True, only_inputs=True)[0]
    grads = grads.view(grads.size(0), -1)
    return ((grads.norm(2, dim=1) - 1) ** 2).mean()


for step in range(100_000):
    for _ in range(N_CRITIC):
        real = next(loader).to(device)
        z = torch.randn(real.size(0), Z_DIM, device=device)
        fake = G(z).detach()
        opt_d.zero_grad()
        d_loss = D(fake).mean() - D(real).mean() + LAMBDA_GP * gradient_penalty(D, real, fake)
        d_loss.backward(retain_graph=True)  # expect: GL002
        opt_d.step()

    opt_g.zero_grad()
    z = torch.randn(64, Z_DIM, device=device)
    g_loss = -D(G(z)).mean()
    g_loss.backward()
    opt_g.step()
    if step % 200 == 0:
        print(f"step {step} d {d_loss.item():.3f} g {g_loss.item():.3f}")
