"""GL002 (bad): the PyTorch tutorial's repeated backward, keeping the graph one call too long.

The first two `retain_graph=True` are needed: the next call walks the same graph of `out` again.
Nothing runs backward after the third call, so its `retain_graph=True` only keeps the graph's
buffers alive until `out` is collected.
"""
import torch

inp = torch.eye(4, 5, requires_grad=True)
out = (inp + 1).pow(2).t()
out.backward(torch.ones_like(out), retain_graph=True)
print(f"First call\n{inp.grad}")
out.backward(torch.ones_like(out), retain_graph=True)
print(f"\nSecond call\n{inp.grad}")
inp.grad.zero_()
out.backward(torch.ones_like(out), retain_graph=True)
print(f"\nCall after zeroing gradients\n{inp.grad}")
