"""Speech-command classifier whose loop clears gradients through a helper imported from
another module of the same project."""
import torch
import torch.nn as nn
import torchaudio

from training_utils import count_parameters, reset_gradients


class M5(nn.Module):
    def __init__(self, n_output=35, stride=16, n_channel=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, n_channel, kernel_size=80, stride=stride), nn.BatchNorm1d(n_channel), nn.ReLU(), nn.MaxPool1d(4),
            nn.Conv1d(n_channel, n_channel, 3), nn.BatchNorm1d(n_channel), nn.ReLU(), nn.MaxPool1d(4),
            nn.Conv1d(n_channel, 2 * n_channel, 3), nn.BatchNorm1d(2 * n_channel), nn.ReLU(), nn.MaxPool1d(4),
        )
        self.fc = nn.Linear(2 * n_channel, n_output)

    def forward(self, x):
        x = self.net(x)
        x = nn.functional.avg_pool1d(x, x.shape[-1]).permute(0, 2, 1)
        return nn.functional.log_softmax(self.fc(x), dim=2)


def main(loader, epochs=2):
    model = M5()
    print("parameters:", count_parameters(model))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.1)
    resample = torchaudio.transforms.Resample(orig_freq=16000, new_freq=8000)
    for epoch in range(epochs):
        model.train()
        for batch_idx, (data, target) in enumerate(loader):
            reset_gradients(optimizer)
            output = model(resample(data))
            loss = nn.functional.nll_loss(output.squeeze(), target)
            loss.backward()
            optimizer.step()
            if batch_idx % 20 == 0:
                print(f"epoch {epoch} batch {batch_idx} loss {loss.item():.4f}")
        scheduler.step()
