"""A small U-Net (Ronneberger et al. 2015: double 3x3 convs, max-pool down, 2x2 transposed conv up,
concatenated skips, 1x1 head), two levels deep and narrow, in both frameworks.

NNX: NHWC, skips concatenated on the last axis; ``nnx.ConvTranspose(padding='VALID')`` is torch's
``ConvTranspose2d(k=2, s=2, padding=0)`` once the kernel is flipped (``diptych.port.convert`` does it).
"""

from __future__ import annotations

C = (4, 8, 16)


def torch_model():
    import torch
    from torch import nn

    def double(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()
        )

    class UNet(nn.Module):
        def __init__(self, cin=1, classes=2):
            super().__init__()
            self.down1, self.down2, self.bottom = double(cin, C[0]), double(C[0], C[1]), double(C[1], C[2])
            self.up2 = nn.ConvTranspose2d(C[2], C[1], 2, stride=2)
            self.dec2 = double(2 * C[1], C[1])
            self.up1 = nn.ConvTranspose2d(C[1], C[0], 2, stride=2)
            self.dec1 = double(2 * C[0], C[0])
            self.head = nn.Conv2d(C[0], classes, 1)

        def forward(self, x):  # (B, 1, H, W)
            s1 = self.down1(x)
            s2 = self.down2(nn.functional.max_pool2d(s1, 2))
            b = self.bottom(nn.functional.max_pool2d(s2, 2))
            d2 = self.dec2(torch.cat([self.up2(b), s2], dim=1))
            d1 = self.dec1(torch.cat([self.up1(d2), s1], dim=1))
            return self.head(d1)  # (B, classes, H, W)

    return UNet()


def nnx_model(rngs):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    def double(cin, cout):
        return nnx.Sequential(
            nnx.Conv(cin, cout, (3, 3), padding=1, rngs=rngs),
            jax.nn.relu,
            nnx.Conv(cout, cout, (3, 3), padding=1, rngs=rngs),
            jax.nn.relu,
        )

    def pool(x):
        return nnx.max_pool(x, (2, 2), strides=(2, 2))

    class UNet(nnx.Module):
        def __init__(self, cin=1, classes=2):
            self.down1, self.down2, self.bottom = double(cin, C[0]), double(C[0], C[1]), double(C[1], C[2])
            self.up2 = nnx.ConvTranspose(C[2], C[1], (2, 2), strides=(2, 2), padding="VALID", rngs=rngs)
            self.dec2 = double(2 * C[1], C[1])
            self.up1 = nnx.ConvTranspose(C[1], C[0], (2, 2), strides=(2, 2), padding="VALID", rngs=rngs)
            self.dec1 = double(2 * C[0], C[0])
            self.head = nnx.Conv(C[0], classes, (1, 1), rngs=rngs)

        def __call__(self, x):  # (B, H, W, 1)
            s1 = self.down1(x)
            s2 = self.down2(pool(s1))
            b = self.bottom(pool(s2))
            d2 = self.dec2(jnp.concatenate([self.up2(b), s2], axis=-1))
            d1 = self.dec1(jnp.concatenate([self.up1(d2), s1], axis=-1))
            return self.head(d1)  # (B, H, W, classes)

    return UNet()
