"""Mixed-precision training of a ViT with GradScaler. Forgot to clear the gradients."""
import time

import timm
import torch
import torch.nn as nn
from torch.cuda.amp import GradScaler, autocast

from imagenet_data import make_loader  # local module, not shown


def train_one_epoch(model, loader, optimizer, scaler, criterion, epoch, device="cuda"):
    model.train()
    start = time.time()
    for step, (images, targets) in enumerate(loader):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with autocast(dtype=torch.float16):
            logits = model(images)
            loss = criterion(logits, targets)
        scaler.scale(loss).backward()  # expect: GL001
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(optimizer)
        scaler.update()
        if step % 100 == 0:
            print(f"epoch {epoch} step {step} loss {loss.item():.3f} ({time.time() - start:.1f}s)")


def main():
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=1000).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    scaler = GradScaler()
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    loader = make_loader("train", batch_size=256)
    for epoch in range(300):
        train_one_epoch(model, loader, optimizer, scaler, criterion, epoch)


if __name__ == "__main__":
    main()
