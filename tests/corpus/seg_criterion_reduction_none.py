"""Binary segmentation with an ignore mask. The criterion is built with reduction='none'
so that masked pixels can be dropped; the masking step was forgotten."""
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from roads import RoadDataset, build_unet  # local module, not shown


class SegTrainer:
    def __init__(self, device="cuda"):
        self.device = device
        self.model = build_unet(in_channels=3, classes=1).to(device)
        self.criterion = nn.BCEWithLogitsLoss(reduction="none")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)

    def step(self, images, masks, valid):
        self.optimizer.zero_grad()
        logits = self.model(images)
        loss = self.criterion(logits, masks)
        loss.backward()  # expect: GL003
        self.optimizer.step()
        return (loss * valid).sum().item() / valid.sum().item()

    def fit(self, epochs=50):
        loader = DataLoader(RoadDataset("train"), batch_size=8, shuffle=True)
        for epoch in range(epochs):
            losses = []
            for images, masks, valid in loader:
                images, masks, valid = (t.to(self.device) for t in (images, masks, valid))
                losses.append(self.step(images, masks, valid))
            print(f"epoch {epoch}: {sum(losses) / len(losses):.4f}")


if __name__ == "__main__":
    SegTrainer().fit()
