"""A ResNet-18-style network (He et al. 2016; torchvision's BasicBlock layout) in both frameworks,
narrow (widths 4-32) and with a CIFAR-style 3x3 stem so that tests run in seconds.

torch: NCHW, ``nn.BatchNorm2d`` (momentum 0.1). NNX: NHWC, ``diptych.port.nnx_layers.BatchNorm``
(torch's running-variance update; ``nnx.BatchNorm`` stores the biased variance), explicit padding
(Flax's ``'SAME'`` pads a stride-2 conv asymmetrically).
"""

from __future__ import annotations

WIDTHS = (4, 8, 16, 32)


def _torch():
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:  # residual downsampling: 1x1 conv + BN
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(WIDTHS[0])
            cin, layers = WIDTHS[0], []
            for i, w in enumerate(WIDTHS):
                layers.append(nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)))
                cin = w
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.fc = nn.Linear(WIDTHS[-1], num_classes)

        def forward(self, x):  # (B, 3, H, W)
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))  # (B, classes)

    return ResNet


def _nnx():
    import jax
    from flax import nnx

    from diptych.port.nnx_layers import BatchNorm

    def pad(p):
        return ((p, p), (p, p))

    class BasicBlock(nnx.Module):
        def __init__(self, cin, cout, stride, *, rngs):
            self.conv1 = nnx.Conv(cin, cout, (3, 3), stride, padding=pad(1), use_bias=False, rngs=rngs)
            self.bn1 = BatchNorm(cout, rngs=rngs)
            self.conv2 = nnx.Conv(cout, cout, (3, 3), 1, padding=pad(1), use_bias=False, rngs=rngs)
            self.bn2 = BatchNorm(cout, rngs=rngs)
            self.downsample = nnx.data(None)
            if stride != 1 or cin != cout:
                self.downsample = nnx.Sequential(
                    nnx.Conv(cin, cout, (1, 1), stride, padding=pad(0), use_bias=False, rngs=rngs),
                    BatchNorm(cout, rngs=rngs),
                )

        def __call__(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = jax.nn.relu(self.bn1(self.conv1(x)))
            return jax.nn.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet(nnx.Module):
        def __init__(self, num_classes=10, *, rngs: nnx.Rngs):
            self.conv1 = nnx.Conv(3, WIDTHS[0], (3, 3), 1, padding=pad(1), use_bias=False, rngs=rngs)
            self.bn1 = BatchNorm(WIDTHS[0], rngs=rngs)
            cin, layers = WIDTHS[0], []
            for i, w in enumerate(WIDTHS):
                layers.append(
                    nnx.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2, rngs=rngs), BasicBlock(w, w, 1, rngs=rngs))
                )
                cin = w
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.fc = nnx.Linear(WIDTHS[-1], num_classes, rngs=rngs)

        def __call__(self, x):  # (B, H, W, 3)
            x = jax.nn.relu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(x.mean(axis=(1, 2)))  # (B, classes)

    return ResNet


def torch_model():
    return _torch()()


def nnx_model(rngs):
    return _nnx()(rngs=rngs)
