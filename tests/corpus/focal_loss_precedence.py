"""Dense object-detection classifier head with a hand-written focal loss.

The `.mean()` binds to the last factor only, so the loss stays one value per anchor.
"""
import torch
import torch.nn.functional as F

from detector import RetinaHead, anchor_targets, load_batches  # local module, not shown


def train(epochs=12, alpha=0.25, gamma=2.0):
    head = RetinaHead(num_classes=80).cuda()
    opt = torch.optim.SGD(head.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    for epoch in range(epochs):
        for feats, boxes, labels in load_batches("coco_train"):
            cls_logits = head(feats)
            targets = anchor_targets(boxes, labels, cls_logits.shape)
            bce = F.binary_cross_entropy_with_logits(cls_logits, targets, reduction="none")
            p_t = torch.exp(-bce)
            focal = alpha * (1 - p_t) ** gamma * bce.mean()
            opt.zero_grad()
            focal.backward()  # expect: GL003
            opt.step()
        print("epoch", epoch, "done")
