"""Fit a learnable image (plus a small colour transform) to a target photo by gradient descent,
as a warm-up for a deep-image-prior experiment. The target is built once from the file; each step
rebuilds the loss, so retain_graph=True is only a leftover."""
import torch
import torchvision.transforms as T
from PIL import Image

target = T.Compose([T.Resize(256), T.CenterCrop(256), T.ToTensor()])(Image.open("photo.jpg").convert("RGB"))
canvas = torch.rand_like(target, requires_grad=True)
color = torch.eye(3, requires_grad=True)
optimizer = torch.optim.Adam([canvas, color], lr=0.05)

for it in range(500):
    optimizer.zero_grad()
    recolored = torch.einsum("ij,jhw->ihw", color, canvas)
    loss = (recolored - target).pow(2).mean() + 1e-3 * (canvas[:, 1:] - canvas[:, :-1]).abs().mean()
    loss.backward(retain_graph=True)  # expect: GL002
    optimizer.step()
    with torch.no_grad():
        canvas.clamp_(0, 1)
    if it % 50 == 0:
        print(it, loss.item())
