"""Knowledge distillation from a ResNet-50 teacher into a ResNet-18 student.

The teacher runs under no_grad, so the only graph is the student's, rebuilt every batch;
retain_graph=True is left over from an experiment with a second loss.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from imagenet_subset import train_loader  # local module, not shown

T, ALPHA = 4.0, 0.9
device = torch.device("cuda")
teacher = torchvision.models.resnet50(weights="IMAGENET1K_V2").to(device).eval()
student = torchvision.models.resnet18(num_classes=1000).to(device)
optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[30, 60, 80], gamma=0.1)


def kd_loss(student_logits, teacher_logits, labels):
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1),
                    reduction="batchmean") * (T * T)
    hard = F.cross_entropy(student_logits, labels)
    return ALPHA * soft + (1.0 - ALPHA) * hard


for epoch in range(90):
    student.train()
    for images, labels in train_loader:
        images, labels = images.to(device), labels.to(device)
        with torch.no_grad():
            t_logits = teacher(images)
        s_logits = student(images)
        loss = kd_loss(s_logits, t_logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)  # expect: GL002
        optimizer.step()
    scheduler.step()
    print(f"epoch {epoch} loss {loss.item():.4f}")
