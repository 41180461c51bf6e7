"""SimCLR pre-training with the NT-Xent loss written via cross-entropy over similarity logits."""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from augment import TwoCropTransform, stl10_unlabeled  # local module, not shown


class SimCLR(nn.Module):
    def __init__(self, dim=128):
        super().__init__()
        backbone = torchvision.models.resnet18(num_classes=dim)
        mlp_in = backbone.fc.in_features
        backbone.fc = nn.Sequential(nn.Linear(mlp_in, mlp_in), nn.ReLU(), nn.Linear(mlp_in, dim))
        self.net = backbone

    def forward(self, x):
        return F.normalize(self.net(x), dim=1)


def nt_xent(z1, z2, tau=0.5):
    z = torch.cat([z1, z2], dim=0)
    n = z1.size(0)
    sim = z @ z.t() / tau
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


device = "cuda"
model = SimCLR().to(device)
loader = torch.utils.data.DataLoader(stl10_unlabeled(TwoCropTransform()), batch_size=256, shuffle=True,
                                     drop_last=True, num_workers=8)
optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-4)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=len(loader) * 100)

for epoch in range(100):
    for (x1, x2), _ in loader:
        z1, z2 = model(x1.to(device)), model(x2.to(device))
        loss = nt_xent(z1, z2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    print(f"epoch {epoch} loss {loss.item():.4f}")
