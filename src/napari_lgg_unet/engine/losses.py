"""Dice loss from logits, optionally mixed with BCE, safe on batches that contain no tumour."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .settings import LOSS_CHOICES
from .validate import check_choice


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the whole batch; `smooth` keeps an all-empty batch at a finite, small loss."""
    prob = torch.sigmoid(logits.float()).flatten()
    target = target.float().flatten()
    intersection = (prob * target).sum()
    return 1.0 - (2.0 * intersection + smooth) / (prob.sum() + target.sum() + smooth)


class SegmentationLoss(torch.nn.Module):
    """'dice' (the reference workflow), 'bce', or 'dice+bce' = dice + bce_weight * BCE (our default)."""

    def __init__(self, kind: str = "dice+bce", bce_weight: float = 1.0) -> None:
        super().__init__()
        check_choice("loss", kind, LOSS_CHOICES)
        self.kind, self.bce_weight = kind, bce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float()) if "bce" in self.kind else 0.0
        if self.kind == "bce":
            return bce
        dice = dice_loss(logits, target)
        return dice + self.bce_weight * bce if self.kind == "dice+bce" else dice
