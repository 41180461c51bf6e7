"""GraphSAGE on a citation graph, full batch, with early stopping on validation accuracy."""
import copy

import torch
import torch.nn.functional as F
from torch_geometric.datasets import Planetoid
from torch_geometric.nn import SAGEConv

data = Planetoid("data/Planetoid", "PubMed")[0]


class SAGE(torch.nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.convs = torch.nn.ModuleList([SAGEConv(d_in, d_hidden), SAGEConv(d_hidden, d_out)])

    def forward(self, x, edge_index):
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = F.dropout(F.relu(x), p=0.5, training=self.training)
        return x


model = SAGE(data.num_features, 64, int(data.y.max()) + 1)
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=5e-4)
best_state, best_val, patience = None, 0.0, 0
while patience < 50:
    model.train()
    optimizer.zero_grad(set_to_none=True)
    logits = model(data.x, data.edge_index)
    loss = F.cross_entropy(logits[data.train_mask], data.y[data.train_mask])
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = model(data.x, data.edge_index).argmax(-1)
        val_acc = (pred[data.val_mask] == data.y[data.val_mask]).float().mean().item()
    if val_acc > best_val:
        best_val, best_state, patience = val_acc, copy.deepcopy(model.state_dict()), 0
    else:
        patience += 1
model.load_state_dict(best_state)
