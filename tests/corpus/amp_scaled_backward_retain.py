"""Mixed-precision EfficientNet training. `retain_graph=True` on the scaled loss is a leftover:
the loss is rebuilt every batch and backward runs once."""
import timm
import torch
from torch.amp import GradScaler, autocast

from leaves import make_loaders  # local module, not shown


def main(epochs=30, device="cuda"):
    model = timm.create_model("efficientnet_b0", pretrained=True, num_classes=5).to(device)
    train_loader, val_loader = make_loaders(batch_size=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-4, epochs=epochs,
                                                    steps_per_epoch=len(train_loader))
    scaler = GradScaler("cuda")
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    for epoch in range(epochs):
        model.train()
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad(set_to_none=True)
            with autocast("cuda"):
                loss = criterion(model(images), labels)
            scaler.scale(loss).backward(retain_graph=True)  # expect: GL002
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += (model(images.to(device)).argmax(1) == labels.to(device)).sum().item()
        print(epoch, correct / len(val_loader.dataset))


if __name__ == "__main__":
    main()
