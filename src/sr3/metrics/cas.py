"""Classification Accuracy Score (Ravuri & Vinyals 2019), as CDM reports it: train a classifier on generated
images only, then measure its accuracy on real held-out images. Samples that lack class-specific content
or diversity train a worse classifier, which FID alone does not show.

The classifier is a small ResNet trained from scratch with flips and padded random crops, deterministic
for a seed; train it on real images too for the score's ceiling at the same budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm: no running statistics, so a classifier trained briefly or on few images evaluates as it trained."""
    return nn.GroupNorm(min(8, channels), channels)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = _norm(c_out)
        self.skip = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class SmallResNet(nn.Module):
    """A ResNet of four stages (width, 2x, 4x, 8x), one block each, global pooling and a linear head."""

    def __init__(self, num_classes: int, width: int = 32, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), _norm(width), nn.ReLU())
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks, c = [], width
        for i, w in enumerate(widths):
            blocks.append(_Block(c, w, 1 if i == 0 else 2))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


@dataclass(frozen=True)
class CASConfig:
    """Classifier training budget: epochs over the training set, batch size, learning rate, width, seed."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    width: int = 32
    seed: int = 0


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flips and random crops of a reflect-padded batch, one draw per image."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    cfg: CASConfig = CASConfig(),
    progress: Callable[[int], None] | None = None,
) -> nn.Module:
    """A classifier trained on `images` [N, C, H, W] in [-1, 1]: AdamW, cosine learning rate, label smoothing 0.1."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    net = SmallResNet(num_classes, cfg.width, images.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(images) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    net.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(images), generator=generator)
        for first in range(0, len(images), cfg.batch_size):
            idx = order[first : first + cfg.batch_size]
            loss = F.cross_entropy(net(augment(images[idx], generator)), labels[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if progress:
            progress(1)
    return net.eval()


@torch.inference_mode()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    """Top-1 accuracy on a labelled set."""
    correct = sum(
        (net(images[i : i + batch]).argmax(dim=1) == labels[i : i + batch]).sum().item() for i in range(0, len(images), batch)
    )
    return correct / len(images)
