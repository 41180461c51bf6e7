"""Hutchinson estimate of the Hessian trace and top eigenvalue (power iteration) of a trained
model's loss; each Hessian-vector product re-uses the first-order gradient graph."""
import torch
import torch.nn.functional as F


def hessian_trace(model, x, y, n_samples=50):
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    estimates = []
    for _ in range(n_samples):
        vs = [torch.randint_like(p, 2) * 2 - 1 for p in params]
        hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
        estimates.append(sum((h * v).sum() for h, v in zip(hvs, vs)).item())
    return sum(estimates) / len(estimates)


def top_eigenvalue(model, x, y, iters=20):
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn_like(p) for p in params]
    eig = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((u * u).sum() for u in v))
        v = [u / norm for u in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eig = sum((h * u).sum() for h, u in zip(hv, v)).item()
        v = [h.detach() for h in hv]
    return eig
