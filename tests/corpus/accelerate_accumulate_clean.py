"""Image classification with accelerate: accumulation handled by accelerator.accumulate,
which also skips the real optimizer step (and the clear) on non-boundary micro-batches."""
import timm
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from pets import PetsDataset  # local module, not shown


def training_function(config):
    accelerator = Accelerator(gradient_accumulation_steps=config["accum"], mixed_precision="fp16")
    set_seed(config["seed"])
    train_dl = DataLoader(PetsDataset("train"), batch_size=config["bs"], shuffle=True, num_workers=4)
    eval_dl = DataLoader(PetsDataset("valid"), batch_size=64)
    model = timm.create_model("resnet50d", pretrained=True, num_classes=37)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"] / 25)
    lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], epochs=config["epochs"],
                                                       steps_per_epoch=len(train_dl))
    model, optimizer, train_dl, eval_dl, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dl, eval_dl, lr_scheduler)
    criterion = torch.nn.CrossEntropyLoss()

    for epoch in range(config["epochs"]):
        model.train()
        for images, labels in train_dl:
            with accelerator.accumulate(model):
                outputs = model(images)
                loss = criterion(outputs, labels)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()

        model.eval()
        correct = total = 0
        for images, labels in eval_dl:
            with torch.no_grad():
                preds = model(images).argmax(dim=-1)
            preds, labels = accelerator.gather_for_metrics((preds, labels))
            correct += (preds == labels).sum().item()
            total += labels.numel()
        accelerator.print(f"epoch {epoch}: {100 * correct / total:.2f}%")


if __name__ == "__main__":
    training_function({"lr": 3e-2, "epochs": 5, "seed": 42, "bs": 32, "accum": 2})
