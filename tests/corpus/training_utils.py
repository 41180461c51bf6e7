"""Shared helpers for the scripts in this folder (imported by imported_helper_clear.py)."""
import torch


def reset_gradients(*optimizers: torch.optim.Optimizer) -> None:
    """Clear the gradients of every optimizer given (set to None, the cheap way)."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
