"""Physics-informed network for the 1-D heat equation: residual and boundary losses, both
scalar, back-propagated together with torch.autograd.backward; input derivatives via
torch.autograd.grad with create_graph=True."""
import torch
import torch.nn as nn

torch.manual_seed(0)
net = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
alpha = 0.1


def residual(xt):
    xt = xt.clone().requires_grad_(True)
    u = net(xt)
    du = torch.autograd.grad(u, xt, grad_outputs=torch.ones_like(u), create_graph=True)[0]
    u_x, u_t = du[:, :1], du[:, 1:]
    u_xx = torch.autograd.grad(u_x, xt, grad_outputs=torch.ones_like(u_x), create_graph=True)[0][:, :1]
    return u_t - alpha * u_xx


for it in range(20000):
    interior = torch.rand(1024, 2)
    boundary = torch.rand(256, 2)
    boundary[:, 0] = torch.randint(0, 2, (256,)).float()
    initial = torch.rand(256, 2)
    initial[:, 1] = 0.0
    pde_loss = residual(interior).pow(2).mean()
    bc_loss = net(boundary).pow(2).mean()
    ic_loss = (net(initial) - torch.sin(torch.pi * initial[:, :1])).pow(2).mean()
    opt.zero_grad()
    torch.autograd.backward([pde_loss, bc_loss + ic_loss])
    opt.step()
    if it % 1000 == 0:
        print(it, pde_loss.item(), bc_loss.item(), ic_loss.item())
