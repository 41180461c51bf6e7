"""Multi-task face model: shared encoder, age regression head and gender head.

The first backward must keep the shared graph for the second; the second one also asks to
retain, although nothing runs backward through that graph again.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import mobilenet_v3_small

from faces import FaceDataset  # local module, not shown


class MultiTaskNet(nn.Module):
    def __init__(self):
        super().__init__()
        base = mobilenet_v3_small(weights=None)
        self.encoder = base.features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.age_head = nn.Linear(576, 1)
        self.gender_head = nn.Linear(576, 2)

    def forward(self, x):
        z = self.pool(self.encoder(x)).flatten(1)
        return self.age_head(z).squeeze(1), self.gender_head(z)


def main():
    device = torch.device("cuda")
    model = MultiTaskNet().to(device)
    loader = torch.utils.data.DataLoader(FaceDataset("utkface/train"), batch_size=64, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    age_w, gender_w = 0.1, 1.0
    for epoch in range(25):
        for img, age, gender in loader:
            img, age, gender = img.to(device), age.float().to(device), gender.to(device)
            opt.zero_grad()
            age_pred, gender_logits = model(img)
            age_loss = age_w * F.l1_loss(age_pred, age)
            gender_loss = gender_w * F.cross_entropy(gender_logits, gender)
            age_loss.backward(retain_graph=True)
            gender_loss.backward(retain_graph=True)  # expect: GL002
            opt.step()
        print(epoch, age_loss.item(), gender_loss.item())


if __name__ == "__main__":
    main()
