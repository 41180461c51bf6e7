"""Lightning Fabric: the user writes the loop, Fabric handles devices and precision."""
import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tiny_stories import TokenDataset, TransformerLM  # local module, not shown


def main():
    fabric = L.Fabric(accelerator="cuda", devices=2, precision="bf16-mixed", strategy="ddp")
    fabric.launch()
    fabric.seed_everything(1234)
    model = TransformerLM(vocab_size=8192, d_model=512, n_layers=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    model, optimizer = fabric.setup(model, optimizer)
    loader = fabric.setup_dataloaders(DataLoader(TokenDataset("train"), batch_size=32, shuffle=True))
    accumulate = 4
    for epoch in range(3):
        for i, (x, y) in enumerate(loader):
            is_accumulating = (i + 1) % accumulate != 0
            with fabric.no_backward_sync(model, enabled=is_accumulating):
                logits = model(x)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
                fabric.backward(loss / accumulate)
            if not is_accumulating:
                fabric.clip_gradients(model, optimizer, max_norm=1.0)
                optimizer.step()
                optimizer.zero_grad()
            if i % 100 == 0:
                fabric.print(f"epoch {epoch} iter {i} loss {loss.item():.3f}")
    fabric.save("checkpoint.ckpt", {"model": model, "optimizer": optimizer})


if __name__ == "__main__":
    main()
