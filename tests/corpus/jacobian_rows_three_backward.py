"""Demonstrates how repeated backward calls accumulate into .grad, then builds a Jacobian
row by row (vector-Jacobian products)."""
import torch

inp = torch.eye(4, 5, requires_grad=True)
out = (inp + 1).pow(2).t()
out.backward(torch.ones_like(inp).t(), retain_graph=True)
print(f"First call\n{inp.grad}")
out.backward(torch.ones_like(inp).t(), retain_graph=True)
print(f"\nSecond call\n{inp.grad}")
inp.grad.zero_()
out.backward(torch.ones_like(inp).t(), retain_graph=True)  # expect: GL002
print(f"\nCall after zeroing gradients\n{inp.grad}")


def jacobian(f, x):
    """Full Jacobian of f at x, one vector-Jacobian product per output element."""
    x = x.detach().requires_grad_(True)
    y = f(x).reshape(-1)
    rows = []
    for i in range(y.numel()):
        (row,) = torch.autograd.grad(y, x, grad_outputs=torch.nn.functional.one_hot(torch.tensor(i), y.numel()).to(y),
                                     retain_graph=i < y.numel() - 1)
        rows.append(row.reshape(-1))
    return torch.stack(rows)


print(jacobian(lambda v: v.sin() * v.sum(), torch.randn(3)))
