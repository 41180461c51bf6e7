"""MAML on sine-wave regression (Finn et al. 2017), functional inner loop.

The inner loop is fine (torch.autograd.grad with create_graph=True returns gradients and never
writes .grad). The outer loop never clears the meta-optimizer.
"""
import math

import torch
import torch.nn.functional as F

torch.manual_seed(42)


def sample_task():
    amp = torch.empty(1).uniform_(0.1, 5.0)
    phase = torch.empty(1).uniform_(0.0, math.pi)
    return lambda x: amp * torch.sin(x + phase)


def make_params():
    def layer(n_in, n_out):
        w = torch.empty(n_out, n_in)
        torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        return [w.requires_grad_(), torch.zeros(n_out, requires_grad=True)]

    return layer(1, 40) + layer(40, 40) + layer(40, 1)


def forward(params, x):
    w1, b1, w2, b2, w3, b3 = params
    x = F.relu(F.linear(x, w1, b1))
    x = F.relu(F.linear(x, w2, b2))
    return F.linear(x, w3, b3)


params = make_params()
meta_opt = torch.optim.Adam(params, lr=1e-3)
inner_lr, inner_steps, meta_batch = 0.01, 1, 25

for it in range(20000):
    meta_loss = 0.0
    for _ in range(meta_batch):
        f = sample_task()
        x_s = torch.empty(10, 1).uniform_(-5, 5)
        x_q = torch.empty(10, 1).uniform_(-5, 5)
        fast = list(params)
        for _ in range(inner_steps):
            support_loss = F.mse_loss(forward(fast, x_s), f(x_s))
            grads = torch.autograd.grad(support_loss, fast, create_graph=True)
            fast = [p - inner_lr * g for p, g in zip(fast, grads)]
        meta_loss = meta_loss + F.mse_loss(forward(fast, x_q), f(x_q))
    meta_loss = meta_loss / meta_batch
    meta_loss.backward()  # expect: GL001
    meta_opt.step()
    if it % 500 == 0:
        print(f"iter {it}: meta loss {meta_loss.item():.4f}")
