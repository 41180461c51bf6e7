"""Fine-tune a torchvision ResNet-18 on CIFAR-10.

Bug: the optimizer's gradients are never cleared, so every step applies the
sum of all gradients seen so far.
"""
import argparse

import torch
import torch.nn as nn
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader


def get_loaders(batch_size):
    tf_train = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    tf_test = T.Compose([T.ToTensor()])
    train = torchvision.datasets.CIFAR10("./data", train=True, download=True, transform=tf_train)
    test = torchvision.datasets.CIFAR10("./data", train=False, download=True, transform=tf_test)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=4),
        DataLoader(test, batch_size=256, num_workers=4),
    )


@torch.no_grad()
def evaluate(model, loader, device):
    model.eval()
    correct = total = 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        preds = model(images).argmax(dim=1)
        correct += (preds == labels).sum().item()
        total += labels.size(0)
    return correct / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torchvision.models.resnet18(num_classes=10).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    train_loader, test_loader = get_loaders(args.batch_size)

    for epoch in range(args.epochs):
        model.train()
        running = 0.0
        for i, (images, labels) in enumerate(train_loader):
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()  # expect: GL001
            optimizer.step()
            running += loss.item()
            if i % 100 == 99:
                print(f"[{epoch + 1}, {i + 1}] loss {running / 100:.3f}")
                running = 0.0
        scheduler.step()
        acc = evaluate(model, test_loader, device)
        print(f"epoch {epoch + 1}: test acc {acc:.4f}")
    torch.save(model.state_dict(), "resnet18_cifar.pt")


if __name__ == "__main__":
    main()
