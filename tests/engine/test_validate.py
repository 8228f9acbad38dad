"""validate: range and type checks, and configs built from untrusted JSON with the types their fields declare."""

from __future__ import annotations

from dataclasses import dataclass

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
