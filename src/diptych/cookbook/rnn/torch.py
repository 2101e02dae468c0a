"""An RNN for sequences in PyTorch: next-value forecasting with correct windows and a held-out split.

Short answer: cut the series into windows ``x[i : i + T]`` whose label is the *next* value ``x[i + T]``
(so there are ``N - T`` of them, not ``N - T + 1``), split the series in time (train on the first 80%,
test on the last 20%), and run ``nn.RNN`` + ``nn.Linear`` on the last hidden state.
What the seed answer #4 got wrong: ``__len__`` was ``N - T + 1`` and ``__getitem__`` read
``labels[index + T]``, one past the end at the last index (IndexError); its labels were random, so
there was nothing to learn; and it "tested" on the training loader. Here the RNN must beat the naive
forecast (repeat the last value) on the held-out end of the series.
Run: ``python -m diptych.cookbook.rnn.torch [--fast]`` (prints one JSON line).
"""

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

T = 20  # window length


def windows(series):  # (N,) -> inputs (N - T, T), labels (N - T,): the label is the value right after the window
    x = np.stack([series[i : i + T] for i in range(len(series) - T)])
    y = series[T:]
    assert len(x) == len(y) and x[-1, -1] == series[-2] and y[-1] == series[-1]
    return x.astype(np.float32), y.astype(np.float32)


class Forecaster(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.rnn, self.out = nn.RNN(1, hidden, batch_first=True), nn.Linear(hidden, 1)

    def forward(self, x):  # (B, T) -> (B,)
        _, h_last = self.rnn(x[:, :, None])  # h_last: (1, B, hidden), tanh(x W_ih + b_ih + h W_hh + b_hh)
        return self.out(h_last[0])[:, 0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer steps (for tests)")
    args = parser.parse_args()
    torch.manual_seed(0)
    t = np.arange(3000)
    series = np.sin(0.1 * t) + 0.5 * np.sin(0.37 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    split = int(0.8 * len(series))  # split in time, then window each part: no window sees the test period
    x_train, y_train = windows(series[:split])
    x_test, y_test = map(torch.from_numpy, windows(series[split:]))

    model = Forecaster()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(400 if args.fast else 3000):
        idx = rng.integers(0, len(x_train), 64)
        loss = F.mse_loss(model(torch.from_numpy(x_train[idx])), torch.from_numpy(y_train[idx]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        test_mse = F.mse_loss(model(x_test), y_test).item()
    naive_mse = F.mse_loss(x_test[:, -1], y_test).item()  # forecast = the last value seen
    print(
        json.dumps(
            {
                "recipe": "rnn",
                "framework": "torch",
                "train_windows": len(x_train),
                "test_windows": len(x_test),
                "test_mse": round(test_mse, 5),
                "naive_mse": round(naive_mse, 5),
            }
        )
    )


if __name__ == "__main__":
    main()
