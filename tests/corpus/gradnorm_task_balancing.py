"""Multi-task regression with loss weights adapted from per-task gradient norms on the last
shared layer. The per-task torch.autograd.grad calls keep the graph because the weighted
total loss runs backward through the same graph afterwards."""
import torch
import torch.nn as nn


class Shared(nn.Module):
    def __init__(self, d_in, tasks):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.heads = nn.ModuleList([nn.Linear(256, 1) for _ in range(tasks)])

    def forward(self, x):
        h = self.body(x)
        return [head(h).squeeze(-1) for head in self.heads]


def train(loader, n_tasks=3, epochs=30, momentum=0.9):
    model = Shared(64, n_tasks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    shared_w = model.body[2].weight
    weights = torch.ones(n_tasks)
    for epoch in range(epochs):
        for x, ys in loader:
            preds = model(x)
            losses = torch.stack([nn.functional.mse_loss(p, y) for p, y in zip(preds, ys)])
            norms = []
            for k in range(n_tasks):
                (g,) = torch.autograd.grad(losses[k], shared_w, retain_graph=True)
                norms.append(g.norm())
            norms = torch.stack(norms)
            target = norms.mean() / (norms + 1e-8)
            weights = momentum * weights + (1 - momentum) * n_tasks * target / target.sum()

            opt.zero_grad()
            total = (weights * losses).sum()
            total.backward()
            opt.step()
        print(epoch, [round(w, 3) for w in weights.tolist()])


def per_task_grads(model, losses):
    """Flattened gradient of each task loss w.r.t. the shared body (for PCGrad-style analysis)."""
    params = list(model.body.parameters())
    out = []
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, params, retain_graph=i < len(losses) - 1)
        out.append(torch.cat([g.reshape(-1) for g in grads]))
    return out
