"""A grab-bag of scalar losses and regularisers from one research repo; all reduce to a
scalar before backward."""
import torch
import torch.nn.functional as F


def regression_step(model, opt, x, y, lam=1e-4):
    opt.zero_grad()
    pred = model(x)
    per_dim = F.mse_loss(pred, y, reduction="none")
    loss = per_dim.mean(dim=0).sum()
    l2 = sum(p.pow(2).sum() for p in model.parameters())
    (loss + lam * l2).backward()
    opt.step()


def classification_step(model, opt, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y, reduction="sum") / x.size(0)
    loss.backward()
    opt.step()


def norm_penalty_step(model, opt, x):
    opt.zero_grad()
    z = model.encode(x)
    penalty = z.norm()
    lam = 0.01
    total = lam * z.pow(2).mean() + penalty
    total.backward()
    opt.step()


def orthogonality_step(weight, opt):
    opt.zero_grad()
    gram = weight @ weight.t()
    eye = torch.eye(weight.size(0))
    loss = torch.linalg.matrix_norm(gram - eye)
    loss.backward()
    opt.step()
