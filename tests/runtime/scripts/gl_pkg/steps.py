"""A project helper that runs the backward (imported by gl_pkg.train)."""


def backward_and_step(loss, optimizer):
    loss.backward(retain_graph=True)
    optimizer.step()
