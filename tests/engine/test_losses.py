"""losses: Dice from logits, BCE, and their weighted sum, on small tensors."""

import pytest
import torch
import torch.nn.functional as F

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.losses import SegmentationLoss, dice_loss


def _target() -> torch.Tensor:
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2:6, 2:6] = 1
    return target


def _logits(mask: torch.Tensor, sure: float = 20.0) -> torch.Tensor:
    return (mask * 2 - 1) * sure  # large logits: sigmoid is 0 or 1 to float precision


def test_dice_loss_is_zero_on_a_perfect_prediction_and_grows_as_it_gets_worse():
    target = _target()
    half = target.clone()
    half[0, 0, 2:4] = 0
    perfect, partial, empty = (dice_loss(_logits(m), target) for m in (target, half, torch.zeros_like(target)))
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)
    assert 0 < partial < empty < 1


def test_an_all_empty_batch_predicted_empty_has_no_dice_loss():
    empty = torch.zeros(2, 1, 8, 8)
    assert dice_loss(_logits(empty), empty).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_plus_bce_adds_bce_with_its_weight():
    target = _target()
    logits = torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    dice, bce = dice_loss(logits, target), F.binary_cross_entropy_with_logits(logits, target)
    assert SegmentationLoss("dice")(logits, target) == pytest.approx(dice.item())
    assert SegmentationLoss("bce")(logits, target) == pytest.approx(bce.item())
    for weight in (0.0, 1.0, 2.5):
        mixed = SegmentationLoss("dice+bce", bce_weight=weight)(logits, target)
        assert mixed.item() == pytest.approx(dice.item() + weight * bce.item(), rel=1e-5)


def test_an_unknown_loss_is_refused_naming_the_choices():
    with pytest.raises(InputError, match="dice\\+bce"):
        SegmentationLoss("focal")
