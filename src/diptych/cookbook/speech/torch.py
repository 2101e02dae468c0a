"""A speech recognizer in PyTorch: spoken digits (FSDD), wav -> log-mel -> a small CNN.

Short answer: turn each recording into a log-mel image (here ``diptych.data``'s numpy front end: 8 kHz,
Hann 256 / hop 128, 32 mel bands, 1.04 s, normalized with the training split's statistics), then
classify the ``(32, 64)`` image with a small CNN, exactly as for MNIST. Test on the official split
(takes 0-4). The full model, augmentation and a transcriber: ``diptych train fsdd-cnn`` and
``diptych transcribe``. What the seed answer got wrong: the question was asked and never answered.
Run: ``python -m diptych.cookbook.speech.torch [--fast]`` (prints one JSON line).
"""

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def load_fsdd():
    from diptych.data import load_dataset  # wav files -> normalized log-mel images, numpy

    try:
        return load_dataset("fsdd")
    except Exception as e:  # missing files: say where to put them, in one line
        sys.exit(
            f"FSDD not available ({' '.join(str(e).split())[:200]}); put its 3,000 wav files in "
            "$DIPTYCH_DATA/fsdd/recordings/"
        )


class SpeechCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(32 * 8 * 16, 64), nn.Linear(64, 10)  # (32, 64) -> (16, 32) -> (8, 16)

    def forward(self, x):  # (B, 1, 32 mel bands, 64 frames)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 16, 16, 32)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 32, 8, 16)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="2 epochs instead of 20")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_fsdd()
    x_train, y_train = data.x_train[:, None], data.y_train.astype(np.int64)  # (2700, 1, 32, 64)
    x_test, y_test = torch.from_numpy(data.x_test[:, None]), torch.from_numpy(data.y_test.astype(np.int64))

    model = SpeechCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(2 if args.fast else 20):
        order = np.random.default_rng(epoch).permutation(len(x_train))
        for i in range(len(x_train) // 64):
            idx = order[i * 64 : (i + 1) * 64]
            loss = F.cross_entropy(model(torch.from_numpy(x_train[idx])), torch.from_numpy(y_train[idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(
        json.dumps(
            {
                "recipe": "speech",
                "framework": "torch",
                "epochs": epoch + 1,
                "test_recordings": len(y_test),
                "final_loss": round(loss.item(), 4),
                "test_accuracy": round(accuracy, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
