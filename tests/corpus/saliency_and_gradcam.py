"""Post-hoc explanations for a trained classifier: vanilla saliency, SmoothGrad and Grad-CAM.
No optimizer involved; backward is only used to read input/activation gradients."""
import torch
import torch.nn.functional as F
from torchvision.models import ResNet50_Weights, resnet50

model = resnet50(weights=ResNet50_Weights.DEFAULT).eval()
for p in model.parameters():
    p.requires_grad_(False)


def saliency(x, target):
    x = x.clone().requires_grad_(True)
    scores = model(x)
    scores[0, target].backward()
    return x.grad.abs().amax(dim=1)


def smoothgrad(x, target, n=25, sigma=0.15):
    total = torch.zeros_like(x)
    for _ in range(n):
        noisy = (x + sigma * torch.randn_like(x)).requires_grad_(True)
        logits = model(noisy)
        one_hot = F.one_hot(torch.full((x.size(0),), target), logits.size(1)).float()
        logits.backward(gradient=one_hot)
        total += noisy.grad
    return (total / n).abs().amax(dim=1)


def grad_cam(x, target):
    acts = {}

    def keep(_, __, out):
        out.retain_grad()
        acts["a"] = out

    handle = model.layer4.register_forward_hook(keep)
    logits = model(x)
    handle.remove()
    score = logits[:, target].sum()
    score.backward()
    a = acts["a"]
    weights = a.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(dim=1))
    return cam / (cam.amax(dim=(1, 2), keepdim=True) + 1e-8)


if __name__ == "__main__":
    img = torch.rand(1, 3, 224, 224)
    cls = model(img).argmax(1).item()
    print(saliency(img, cls).shape, smoothgrad(img, cls).shape, grad_cam(img, cls).shape)
