"""Notes from working through the autograd tutorial."""
import torch

# 1. scalar output: fine
x = torch.ones(2, 2, requires_grad=True)
y = x + 2
z = y * y * 3
out = z.mean()
out.backward()
print(x.grad)

# 2. vector-Jacobian product: pass the vector explicitly
x = torch.randn(3, requires_grad=True)
y = x * 2
while y.data.norm() < 1000:
    y = y * 2
v = torch.tensor([0.1, 1.0, 0.0001], dtype=torch.float)
y.backward(v)
print(x.grad)

# 3. my first try, which raised "grad can be implicitly created only for scalar outputs"
w = torch.randn(5, 3, requires_grad=True)
b = torch.randn(3, requires_grad=True)
inputs = torch.ones(5)
pred = torch.matmul(inputs, w) + b
err = (pred - torch.zeros(3)) ** 2
err.backward()  # expect: GL003
print(w.grad, b.grad)

# 4. the fix
w.grad = None
b.grad = None
err = ((torch.matmul(inputs, w) + b - torch.zeros(3)) ** 2).sum()
err.backward()
print(w.grad, b.grad)
