"""SAM-like two-pass update written by hand with torch.autograd.grad.

The first pass keeps its graph with retain_graph=True, but the second pass recomputes the
loss at the perturbed weights; nothing ever goes back through the first graph.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from data import get_loader  # local module, not shown


def train(model: nn.Module, epochs=10, lr=0.05, rho=0.05):
    loader = get_loader(batch_size=128)
    params = [p for p in model.parameters() if p.requires_grad]
    for epoch in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, retain_graph=True)  # expect: GL002
            scale = rho / (torch.norm(torch.stack([g.norm() for g in grads])) + 1e-12)
            eps = [g * scale for g in grads]
            with torch.no_grad():
                for p, e in zip(params, eps):
                    p.add_(e)
            perturbed = F.cross_entropy(model(x), y)
            sam_grads = torch.autograd.grad(perturbed, params)
            with torch.no_grad():
                for p, e, g in zip(params, eps, sam_grads):
                    p.sub_(e)
                    p.sub_(lr * g)
        print(f"epoch {epoch}: loss {loss.item():.4f}")
