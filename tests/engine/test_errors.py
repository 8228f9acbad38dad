"""errors: one family of user-facing errors, and foreign exceptions described in one line."""

import pytest

from napari_lgg_unet.engine.errors import (
    DeviceError, InputError, JobError, LggUnetError, ModelError, TrainingError, describe, few_names,
)


@pytest.mark.parametrize("kind", [InputError, ModelError, DeviceError, JobError, TrainingError])
def test_every_error_a_user_can_act_on_is_one_of_ours(kind):
    assert issubclass(kind, LggUnetError) and not issubclass(LggUnetError, kind)


def test_describe_gives_the_type_and_the_text_on_one_line():
    assert describe(ValueError("bad\n  value\tthere")) == "ValueError: bad value there"


def test_describe_leaves_no_empty_colon_for_an_error_without_text():
    assert describe(MemoryError()) == "MemoryError"
    assert describe(OSError("   ")) == "OSError"


@pytest.mark.parametrize(("names", "shown", "said"), [
    (["a"], 3, "a"),
    (["a", "b"], 2, "a and b"),
    (["a", "b", "c"], 3, "a, b and c"),
    (["a", "b", "c"], 2, "a, b and 1 more"),
    ([f"case{i}" for i in range(300)], 3, "case0, case1, case2 and 297 more"),
])
def test_few_names_lists_a_few_and_counts_the_rest(names, shown, said):
    assert few_names(names, shown=shown) == said
