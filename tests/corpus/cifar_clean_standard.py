"""Standard supervised loop: zero_grad at the top of every batch, cosine schedule per epoch,
eval under no_grad, best-checkpoint saving."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(256, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def main():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    norm = T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    train_set = torchvision.datasets.CIFAR10("data", True, T.Compose([T.RandomCrop(32, 4), T.RandomHorizontalFlip(),
                                                                      T.ToTensor(), norm]), download=True)
    test_set = torchvision.datasets.CIFAR10("data", False, T.Compose([T.ToTensor(), norm]), download=True)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True, num_workers=4)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=512)

    model = SmallNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=60)
    best = 0.0
    for epoch in range(60):
        model.train()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        scheduler.step()

        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
        acc = correct / len(test_set)
        if acc > best:
            best = acc
            os.makedirs("ckpt", exist_ok=True)
            torch.save({"model": model.state_dict(), "epoch": epoch, "acc": acc}, "ckpt/best.pt")
        print(f"epoch {epoch}: acc {acc:.4f} (best {best:.4f})")


if __name__ == "__main__":
    main()
