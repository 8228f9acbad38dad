"""errors: one family of user-facing errors, and foreign exceptions described in one line."""

import pytest

from napari_lgg_unet.engine.errors import (
    DeviceError, InputError, JobError, LggUnetError, ModelError, TrainingError, describe,
)


@pytest.mark.parametrize("kind", [InputError, ModelError, DeviceError, JobError, TrainingError])
def test_every_error_a_user_can_act_on_is_one_of_ours(kind):
    assert issubclass(kind, LggUnetError) and not issubclass(LggUnetError, kind)


def test_describe_gives_the_type_and_the_text_on_one_line():
    assert describe(ValueError("bad\n  value\tthere")) == "ValueError: bad value there"


def test_describe_leaves_no_empty_colon_for_an_error_without_text():
    assert describe(MemoryError()) == "MemoryError"
    assert describe(OSError("   ")) == "OSError"
