"""Project helpers that run the backward and the step, with no clear anywhere (imported by helper_loop.py)."""


def train_step(model, optimizer, batch):
    loss = model(batch).pow(2).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


def run_epoch(model, optimizer, batches):
    for batch in batches:
        train_step(model, optimizer, batch)
