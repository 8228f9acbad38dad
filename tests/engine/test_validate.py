"""validate: range and type checks, and configs built from untrusted JSON with the types their fields declare."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from napari_lgg_unet.engine.errors import InputError, ModelError
from napari_lgg_unet.engine.validate import check_bool, check_choice, check_float, check_int, from_json


@dataclass(frozen=True)
class Inner:
    size: int = 1


@dataclass(frozen=True)
class Settings:
    rate: float = 0.5
    name: str = "a"
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = Inner()
    note: str | None = None

    def __post_init__(self) -> None:
        check_float("rate", self.rate, 0, 1)


def test_from_json_ignores_unknown_keys_defaults_missing_ones_and_converts_types():
    settings = from_json(Settings, {"rate": 1, "sizes": [3, 4], "inner": {"size": 5}, "added_later": True})
    assert settings == Settings(rate=1.0, sizes=(3, 4), inner=Inner(5))
    assert isinstance(settings.rate, float) and from_json(Settings, {}) == Settings()


@pytest.mark.parametrize("data, named", [
    ({"rate": "0.5"}, "rate"), ({"rate": True}, "rate"), ({"name": 3}, "name"), ({"sizes": 3}, "sizes"),
    ({"sizes": [1, 2.5]}, r"sizes\[1\]"), ({"inner": {"size": "big"}}, "inner.size"), ({"inner": []}, "inner"),
])
def test_from_json_refuses_wrong_types_naming_the_field(data, named):
    with pytest.raises(InputError, match=named):
        from_json(Settings, data)


def test_from_json_refuses_a_non_object_and_reports_ranges_as_the_error_asked_for():
    with pytest.raises(ModelError, match="Settings must be an object"):
        from_json(Settings, [1], ModelError)
    with pytest.raises(ModelError, match="rate must be in"):
        from_json(Settings, {"rate": 2}, ModelError)


def test_checks_accept_values_in_range_and_refuse_the_rest():
    assert check_int("n", 3, 1, 3) == 3 and check_float("x", 1, 0, 1) == 1.0 and check_bool("b", False) is False
    assert check_choice("c", "a", ("a", "b")) == "a"
    for bad in (lambda: check_int("n", True, 0, 9), lambda: check_int("n", 4, 1, 3),
                lambda: check_float("x", 0, 0, 1, low_open=True), lambda: check_float("x", float("nan"), 0, 1),
                lambda: check_bool("b", 1), lambda: check_choice("c", "z", ("a", "b"))):
        with pytest.raises(InputError):
            bad()


def test_checks_take_numpy_scalars_and_give_back_plain_python_values():
    """What arithmetic on arrays, or a table's column, gives; kept as Python values so config.json stays plain JSON."""
    checked = [check_int("n", np.int64(3), 1, 3), check_int("n", np.uint8(3), 1, 3),
               check_float("x", np.float32(0.4), 0, 1), check_float("x", np.float64(0.4), 0, 1),
               check_float("x", np.int64(1), 0, 1),
               check_bool("b", np.bool_(True)), check_choice("c", np.str_("a"), ("a", "b"))]
    assert checked == [3, 3, 0.4, 0.4, 1.0, True, "a"]  # np.float32(0.4) is 0.4000000059604645 as a float
    assert [type(value) for value in checked] == [int, int, float, float, float, bool, str]


@pytest.mark.parametrize("check, value, phrase", [
    (lambda v: check_int("n", v, 0, 9), np.bool_(True), "must be a whole number"),
    (lambda v: check_float("x", v, 0, 1), np.bool_(True), "must be a finite number"),
    (lambda v: check_int("n", v, 0, 9), np.float64(3.0), "must be a whole number"),  # a count is never a float
    (lambda v: check_int("n", v, 0, 9), 3.0, "must be a whole number"),
    (lambda v: check_int("n", v, 0, 9), np.int64(10), "between 0 and 9"),
    (lambda v: check_float("x", v, 0, 1), np.float32("nan"), "finite"),
    (lambda v: check_float("x", v, 0, 1), np.float64("inf"), "finite"),
    (lambda v: check_float("x", v, 0, 1), np.float32(1.5), r"in \[0, 1\]"),
    (lambda v: check_float("x", v, 0, 1), np.array([0.5]), "finite number"),
    (lambda v: check_bool("b", v), np.int64(1), "true or false"),
])
def test_numpy_scalars_are_refused_where_their_python_twins_are(check, value, phrase):
    with pytest.raises(InputError, match=phrase):
        check(value)


@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["10**400", "-10**400"])
def test_a_whole_number_beyond_any_float_is_out_of_range_rather_than_a_crash(value):
    with pytest.raises(InputError, match=r"x must be in \[0, 1\]"):
        check_float("x", value, 0, 1)
