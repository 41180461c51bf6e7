"""Integrated gradients for a text classifier over the embedding space, batching the
interpolation steps and using grad_outputs for the per-example target scores."""
import torch


def integrated_gradients(model, embeds, target, baseline=None, steps=64, batch=16):
    if baseline is None:
        baseline = torch.zeros_like(embeds)
    alphas = torch.linspace(0.0, 1.0, steps, device=embeds.device)
    total = torch.zeros_like(embeds)
    for chunk in alphas.split(batch):
        path = baseline + chunk.view(-1, 1, 1) * (embeds - baseline)
        path.requires_grad_(True)
        logits = model(inputs_embeds=path).logits
        target_scores = logits[:, target]
        (grads,) = torch.autograd.grad(target_scores, path, grad_outputs=torch.ones_like(target_scores))
        total += grads.sum(dim=0, keepdim=True)
    attributions = (embeds - baseline) * total / steps
    return attributions.sum(dim=-1)


def completeness_gap(model, embeds, target, attributions):
    with torch.no_grad():
        f_x = model(inputs_embeds=embeds).logits[0, target]
        f_0 = model(inputs_embeds=torch.zeros_like(embeds)).logits[0, target]
    return (attributions.sum() - (f_x - f_0)).abs().item()


def input_x_gradient(model, embeds, target):
    embeds = embeds.detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits
    logits.backward(torch.nn.functional.one_hot(torch.tensor([target]), logits.size(-1)).to(logits.dtype))
    return (embeds * embeds.grad).sum(-1)
