"""Depth + surface-normal multi-task network. Two backward passes through the shared encoder:
the first must keep the graph, the second frees it."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from nyu import NYUv2, MTLNet  # local module, not shown

device = "cuda"
net = MTLNet(tasks=("depth", "normal")).to(device)
loader = torch.utils.data.DataLoader(NYUv2("train"), batch_size=8, shuffle=True)
optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
weights = {"depth": 1.0, "normal": 0.5}

for epoch in range(100):
    for rgb, depth, normal in loader:
        rgb, depth, normal = rgb.to(device), depth.to(device), normal.to(device)
        optimizer.zero_grad()
        out = net(rgb)
        valid = (depth > 0).float()
        depth_loss = (torch.abs(out["depth"] - depth) * valid).sum() / valid.sum()
        normal_loss = (1 - F.cosine_similarity(out["normal"], normal, dim=1)).mean()
        (weights["depth"] * depth_loss).backward(retain_graph=True)
        (weights["normal"] * normal_loss).backward()
        optimizer.step()
    print(epoch, depth_loss.item(), normal_loss.item())
