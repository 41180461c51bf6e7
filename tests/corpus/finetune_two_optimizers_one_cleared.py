"""Linear-probe-then-finetune: the backbone gets a small SGD learning rate and the new
head gets Adam. Only the head optimizer is cleared, so the backbone's gradients pile up.
"""
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import models

from data import build_dataset  # project module, not shown


def build_model(num_classes):
    backbone = models.resnet50(weights="IMAGENET1K_V2")
    in_features = backbone.fc.in_features
    backbone.fc = nn.Identity()
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(in_features, num_classes))
    return backbone, head


def train(num_classes=102, epochs=20, device="cuda"):
    backbone, head = build_model(num_classes)
    backbone.to(device)
    head.to(device)
    loader = DataLoader(build_dataset("train"), batch_size=32, shuffle=True, drop_last=True)

    backbone_opt = torch.optim.SGD(backbone.parameters(), lr=1e-3, momentum=0.9)
    head_opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)

    for epoch in range(epochs):
        backbone.train()
        head.train()
        total = 0.0
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)

            head_opt.zero_grad()
            feats = backbone(images)
            logits = head(feats)
            loss = criterion(logits, labels)
            loss.backward()  # expect: GL001
            backbone_opt.step()
            head_opt.step()
            total += loss.item() * images.size(0)
        print(f"epoch {epoch}: loss {total / len(loader.dataset):.4f}")
    return backbone, head


if __name__ == "__main__":
    train()
