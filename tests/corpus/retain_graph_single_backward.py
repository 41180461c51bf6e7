"""Tabular churn classifier. Someone added retain_graph=True "to fix an error" years ago;
the loss is rebuilt from scratch every batch and backward runs once, so it only keeps
every batch's graph alive a step longer."""
import pandas as pd
import torch
import torch.nn as nn
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader, TensorDataset

df = pd.read_csv("churn.csv")
y = df.pop("churned").values
X = StandardScaler().fit_transform(df.values)
X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.2, random_state=0)
train_ds = TensorDataset(torch.tensor(X_tr, dtype=torch.float32), torch.tensor(y_tr, dtype=torch.float32))
loader = DataLoader(train_ds, batch_size=128, shuffle=True)

model = nn.Sequential(
    nn.Linear(X.shape[1], 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3),
    nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1),
)
pos_weight = torch.tensor([(y_tr == 0).sum() / (y_tr == 1).sum()], dtype=torch.float32)
criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

for epoch in range(40):
    model.train()
    epoch_loss = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        logits = model(xb).squeeze(1)
        loss = criterion(logits, yb)
        loss.backward(retain_graph=True)  # expect: GL002
        optimizer.step()
        epoch_loss += loss.item() * len(xb)
    model.eval()
    with torch.no_grad():
        va_logits = model(torch.tensor(X_va, dtype=torch.float32)).squeeze(1)
        va_acc = ((va_logits > 0).numpy() == y_va).mean()
    print(f"epoch {epoch:02d} train {epoch_loss / len(train_ds):.4f} val acc {va_acc:.3f}")
