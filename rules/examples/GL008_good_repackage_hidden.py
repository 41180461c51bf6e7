"""GL008 (good): the word-language-model idiom, the state detached once per batch."""
import torch
from torch import nn

torch.manual_seed(0)
lstm = nn.LSTM(3, 8)
head = nn.Linear(8, 1)
optimizer = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-2)
chunks = [(torch.randn(5, 2, 3), torch.randn(5, 2, 1)) for _ in range(4)]


def repackage_hidden(h):
    """Wrap hidden states in new tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


state = (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))
for inputs, targets in chunks:
    state = repackage_hidden(state)
    output, state = lstm(inputs, state)
    loss = nn.functional.mse_loss(head(output), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
