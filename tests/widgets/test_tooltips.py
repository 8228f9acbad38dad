"""Every control of both dock widgets explains itself, and the Train widget's limits are the settings' own."""

from __future__ import annotations

import pytest
from magicgui.widgets import Container

from napari_lgg_unet.engine.settings import TrainConfig, settings_of
from napari_lgg_unet.widgets.tooltips import TOOLTIPS

from widget_helpers import dock


def _controls(container: Container):
    for widget in container:
        if isinstance(widget, Container):
            yield from _controls(widget)
        else:
            yield widget


@pytest.mark.parametrize("name", ["Segment tumour", "Train U-Net"])
def test_every_control_has_a_tooltip(viewer, name):
    controls = list(_controls(dock(viewer, name)))
    assert len(controls) > 10
    for control in controls:
        assert control.tooltip, f"{name}: {control.name or control.label} has no tooltip"


def test_training_settings_are_explained_by_their_declaration_unless_the_table_says_more(viewer):
    settings = dock(viewer, "Train U-Net").settings
    assert settings.epochs.tooltip.lower() == settings_of(TrainConfig)["epochs"].help.lower()
    assert settings.augment.tooltip == TOOLTIPS["augment"]


def test_spin_box_limits_are_the_declared_ranges(viewer):
    settings, declared = dock(viewer, "Train U-Net").settings, settings_of(TrainConfig)
    for name in ("epochs", "batch_size"):
        control = getattr(settings, name)
        assert (control.min, control.max) == (declared[name].low, declared[name].high), name
    assert settings.val_fraction.min == 0 and settings.val_fraction.max < declared["val_fraction"].high
    assert 0 < settings.lr.min < TrainConfig().lr <= settings.lr.max == declared["lr"].high


@pytest.mark.parametrize("name", ["Segment tumour", "Train U-Net"])
def test_the_precision_control_says_what_lgg_unet_help_says_auto_does(viewer, name):
    declared = settings_of(TrainConfig)["precision"].help
    [control] = [c for c in _controls(dock(viewer, name)) if c.name == "precision"]
    assert control.tooltip.lower() == declared.lower()
    assert all(what in declared for what in ("fp32 channels-last", "bf16 channels-last", "once per machine"))
