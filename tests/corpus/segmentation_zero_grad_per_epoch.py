"""DeepLabV3 fine-tuning on Pascal VOC. zero_grad is called once per epoch (in the epoch loop)
instead of once per batch."""
import torch
import torch.nn as nn
from torchvision.datasets import VOCSegmentation
from torchvision.models.segmentation import deeplabv3_resnet50

from seg_transforms import joint_transforms  # local module, not shown

device = torch.device("cuda")
train_set = VOCSegmentation("data", image_set="train", transforms=joint_transforms(train=True))
loader = torch.utils.data.DataLoader(train_set, batch_size=8, shuffle=True, num_workers=4, drop_last=True)
model = deeplabv3_resnet50(weights=None, weights_backbone="IMAGENET1K_V2", num_classes=21, aux_loss=True).to(device)
params = [
    {"params": [p for p in model.backbone.parameters() if p.requires_grad]},
    {"params": [p for p in model.classifier.parameters() if p.requires_grad]},
    {"params": [p for p in model.aux_classifier.parameters() if p.requires_grad], "lr": 0.02},
]
optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
total_iters = 30 * len(loader)
lr_scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_iters, power=0.9)
criterion = nn.CrossEntropyLoss(ignore_index=255)

for epoch in range(30):
    model.train()
    optimizer.zero_grad()
    for it, (image, target) in enumerate(loader):
        image, target = image.to(device), target.to(device)
        out = model(image)
        loss = criterion(out["out"], target) + 0.5 * criterion(out["aux"], target)
        loss.backward()  # expect: GL001
        optimizer.step()
        lr_scheduler.step()
        if it % 20 == 0:
            print(f"epoch {epoch} it {it}/{len(loader)} loss {loss.item():.4f} lr {optimizer.param_groups[0]['lr']:.5f}")
    torch.save(model.state_dict(), f"deeplab_{epoch}.pth")
