"""Training with gradient-noise diagnostics: per-batch gradient norms of the two loss terms are
logged through torch.autograd.grad before the real backward (those calls must keep the graph);
an end-of-epoch probe on a fresh validation batch keeps a graph nobody uses again."""
import torch
import torch.nn.functional as F


def flat_norm(grads):
    return torch.sqrt(sum((g.detach() ** 2).sum() for g in grads if g is not None))


def train(model, train_loader, val_loader, epochs=10, lr=1e-3, wd=1e-4, log=print):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    for epoch in range(epochs):
        for step, (x, y) in enumerate(train_loader):
            logits = model(x)
            data_loss = F.cross_entropy(logits, y)
            reg_loss = wd * sum((p ** 2).sum() for p in params)
            if step % 50 == 0:
                g_data = torch.autograd.grad(data_loss, params, retain_graph=True, allow_unused=True)
                log({"grad_norm/data": flat_norm(g_data).item()})
            optimizer.zero_grad()
            (data_loss + reg_loss).backward()
            optimizer.step()

        xv, yv = next(iter(val_loader))
        val_loss = F.cross_entropy(model(xv), yv)
        g_val = torch.autograd.grad(val_loss, params, retain_graph=True)  # expect: GL002
        log({"epoch": epoch, "grad_norm/val": flat_norm(g_val).item(), "val_loss": val_loss.item()})
