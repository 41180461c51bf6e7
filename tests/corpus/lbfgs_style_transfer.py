"""Neural style transfer: the image itself is optimised with L-BFGS and a closure that
clears, evaluates and back-propagates."""
import torch
import torch.nn.functional as F
from torchvision.models import VGG19_Weights, vgg19

from style_utils import gram_matrix, load_image, save_image  # local module, not shown

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
cnn = vgg19(weights=VGG19_Weights.DEFAULT).features.to(device).eval()
for p in cnn.parameters():
    p.requires_grad_(False)
content_layers, style_layers = {21}, {0, 5, 10, 19, 28}


def features(x):
    content, style = [], []
    for i, layer in enumerate(cnn):
        x = layer(x)
        if i in content_layers:
            content.append(x)
        if i in style_layers:
            style.append(gram_matrix(x))
    return content, style


content_img = load_image("content.jpg").to(device)
style_img = load_image("style.jpg").to(device)
with torch.no_grad():
    target_content, _ = features(content_img)
    _, target_style = features(style_img)

input_img = content_img.clone().requires_grad_(True)
optimizer = torch.optim.LBFGS([input_img], max_iter=20)
style_weight, content_weight = 1e6, 1.0

for outer in range(15):
    def closure():
        with torch.no_grad():
            input_img.clamp_(0, 1)
        optimizer.zero_grad()
        content, style = features(input_img)
        c_loss = sum(F.mse_loss(c, t) for c, t in zip(content, target_content))
        s_loss = sum(F.mse_loss(s, t) for s, t in zip(style, target_style))
        loss = content_weight * c_loss + style_weight * s_loss
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    print(f"round {outer}: loss {loss.item():.2f}")

with torch.no_grad():
    input_img.clamp_(0, 1)
save_image(input_img, "out.jpg")
