import re

import numpy as np
import pytest
import torch

from napari_lgg_unet.engine.corrections import CorrectionSession
from napari_lgg_unet.engine.errors import InputError, ModelError
from napari_lgg_unet.engine.model import LoadedModel, ModelConfig, load_model
from napari_lgg_unet.engine.model_input import InputConfig
from napari_lgg_unet.engine.postprocess import PostprocessConfig
from napari_lgg_unet.engine.predict import SegmentOptions
from napari_lgg_unet.engine.preprocess import PreprocessConfig
from napari_lgg_unet.engine.stopping import Stopped
from napari_lgg_unet.engine.units import voxel_volume
from napari_lgg_unet.engine.volumes import Geometry


class _FollowsClicks(torch.nn.Module):
    """Tumour where FLAIR is bright, plus around positive clicks, minus around negative ones."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(40.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x[:, 1:2] + x[:, -2:-1] - x[:, -1:] - 0.5)


def _session(image: np.ndarray, **kwargs) -> CorrectionSession:
    config = ModelConfig(preprocess=PreprocessConfig(image_size=32), inputs=InputConfig(clicks=True, click_reach=1),
                         postprocess=PostprocessConfig(min_size=20))
    return CorrectionSession(LoadedModel(_FollowsClicks().eval(), config, "test"), image, **kwargs)


def _scan() -> np.ndarray:
    image = np.zeros((6, 32, 32), np.float32)
    image[:, 8:16, 8:16] = 100.0  # a bright block through every slice
    image[:, 0, 0] = 50.0
    return image


def test_a_negative_click_removes_false_tumour_near_it_on_the_slices_it_reaches_only():
    session = _session(_scan())
    before = session.mask.copy()
    assert before.shape == (6, 32, 32) and before[:, 12, 12].all()
    mask = session.click(2, 12, 12, positive=False)
    assert mask is session.mask
    assert not mask[1:4, 12, 12].any()  # the clicked slice and its neighbours within reach
    np.testing.assert_array_equal(mask[[0, 4, 5]], before[[0, 4, 5]])


def test_a_positive_click_adds_tumour_and_keeps_its_piece_even_below_the_minimum_size():
    session = _session(_scan())
    listed_before = session.pieces  # listed once, then the click must list them afresh
    session.click(4, 26, 26, positive=True)
    assert session.mask[4, 26, 26] == 1
    k = session.piece_labels[4, 26, 26]
    assert k > 0 and any(p.index == k for p in session.pieces)
    assert session.pieces is not listed_before and len(session.pieces) == session.piece_count
    assert sum(p.voxels for p in session.pieces) == session.mask.sum()
    assert all(0 <= p.confidence <= 1 for p in session.pieces)


class _IgnoresClicks(_FollowsClicks):
    """Tumour where FLAIR is bright, deaf to clicks: a network that refuses a click, as ours does on some confident
    false tumour."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x[:, 1:2] - 0.5)


def test_a_click_the_network_refuses_still_sets_the_clicked_spot_and_nothing_else():
    config = ModelConfig(preprocess=PreprocessConfig(image_size=32), inputs=InputConfig(clicks=True, click_reach=1),
                         postprocess=PostprocessConfig(min_size=20))
    session = CorrectionSession(LoadedModel(_IgnoresClicks().eval(), config, "test"), _scan())
    before = session.mask.copy()
    session.click(2, 12, 12, positive=False)
    rows, cols = np.ogrid[:32, :32]
    disc = (rows - 12) ** 2 + (cols - 12) ** 2 <= 3**2  # the click map's radius: 3 network pixels, here 3 pixels
    expected = before.copy()
    expected[2][disc] = 0
    np.testing.assert_array_equal(session.mask, expected)
    session.click(4, 26, 26, positive=True)  # on background, far from the block: a piece of its own, kept
    expected[4][(rows - 26) ** 2 + (cols - 26) ** 2 <= 3**2] = 1
    np.testing.assert_array_equal(session.mask, expected)
    session.undo()
    session.undo()
    np.testing.assert_array_equal(session.mask, before)


def test_a_negative_click_keeps_what_remains_of_a_piece_even_below_the_minimum_size():
    image = np.zeros((6, 32, 32), np.float32)
    image[2, 8:14, 8:20] = 100.0  # a 72-voxel piece, kept by a minimum size of 50
    session = _session(image, options=SegmentOptions(postprocess=PostprocessConfig(min_size=50)))
    assert session.mask.sum() == 72
    session.click(2, 11, 17, positive=False)  # trims about half of it, and cuts off a one-voxel corner
    remains = (session.probability >= 0.5) & (session.piece_labels == 0)
    assert 20 < session.mask.sum() < 50 and session.mask[2, 11, 9]
    assert remains.sum() == 1  # the cut-off corner is judged by the clean-up and dropped
    session.set_postprocess(PostprocessConfig(min_size=80))  # the clean-up judges the automatic mask again
    assert session.mask.sum() == 0


def _two_pieces() -> np.ndarray:
    """Probabilities of a 216-voxel piece through all 6 slices and a 200-voxel one on slices 0-1, on a blank scan
    (where the test network removes everything a "not tumour" click reaches: whole slices at this size)."""
    probability = np.zeros((6, 32, 32), np.float32)
    probability[:, 4:10, 4:10] = 0.9
    probability[0:2, 20:30, 20:30] = 0.9
    return probability


def _blank_session(probability: np.ndarray, **postprocess) -> CorrectionSession:
    options = SegmentOptions(postprocess=PostprocessConfig(**postprocess))
    return _session(np.zeros((6, 32, 32), np.float32), options=options, probability=probability)


def test_a_negative_click_never_brings_back_a_fragment_it_dropped_before():
    probability = _two_pieces()
    probability[0:2, 20:30, 20:30] = 0
    session = _blank_session(probability, min_size=100)
    session.click(2, 6, 6, positive=False)  # slices 1-3 go: 36 voxels on slice 0, 72 on slices 4-5 remain
    assert session.mask.sum() == 72 and not session.mask[0].any()
    session.click(4, 6, 6, positive=False)  # slices 3-5 go: the slice-0 fragment must not return
    assert session.mask.sum() == 0


def test_with_only_the_largest_piece_kept_a_click_never_moves_the_mask_against_its_kind():
    session = _blank_session(_two_pieces(), keep_largest=True)
    assert session.mask.sum() == 216
    before = session.mask.copy()
    session.click(2, 6, 6, positive=False)  # the kept piece shrinks below the other one, which must not appear
    assert not session.mask[0, 20:30, 20:30].any() and not (session.mask & ~before.astype(bool)).any()
    session = _blank_session(_two_pieces(), keep_largest=True)
    session.click(0, 25, 30, positive=True)  # grows the other piece past the kept one, which must stay
    assert session.mask[3, 6, 6] and session.mask[0, 25, 25]


def test_undo_returns_exactly_to_the_mask_before_each_click():
    session = _session(_scan())
    first = session.mask.copy()
    session.click(2, 12, 12, positive=False)
    second = session.mask.copy()
    session.click(4, 26, 26, positive=True)
    np.testing.assert_array_equal(session.undo(), second)
    np.testing.assert_array_equal(session.undo(), first)
    with pytest.raises(InputError, match="no click to undo"):
        session.undo()


@pytest.mark.parametrize("click", [(6, 1, 1), (-1, 1, 1), (0, 40, 1), (0, float("nan"), 1), ("a", 1, 1),
                                   (0, 1, 1, "no")])
def test_a_bad_click_is_refused_and_leaves_the_session_unchanged(click):
    session = _session(_scan())
    before = session.mask.copy()
    with pytest.raises(InputError):
        session.click(*click)
    assert session.clicks == []
    np.testing.assert_array_equal(session.mask, before)


def test_a_2d_image_is_a_one_slice_scan():
    session = _session(_scan()[0])
    assert session.mask.shape == session.piece_labels.shape == (1, 32, 32)
    session.click(0, 26, 26)
    assert session.mask[0, 26, 26] == 1


def test_a_session_given_the_scans_voxel_volume_sizes_its_pieces_in_mm3_by_the_one_rule_of_units():
    affine = np.array([[0.9, 0.0, 0.3, 0.0], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0, 0, 0, 1]])  # sheared
    geometry = Geometry.of((6, 32, 32), affine)
    session = _session(_scan(), voxel_volume=geometry.voxel_volume)
    mm3 = voxel_volume(affine[:3, :3])
    assert session.pieces and mm3 == pytest.approx(0.9 * 0.8 * 3.0)
    assert [piece.size for piece in session.pieces] == [pytest.approx(p.voxels * mm3) for p in session.pieces]
    assert [piece.size for piece in _session(_scan()).pieces] == [None] * len(session.pieces)


@pytest.mark.parametrize("volume", [0.0, -1.0, float("nan"), float("inf"), "1 mm3", True])
def test_a_voxel_volume_that_is_no_positive_finite_number_is_refused(volume):
    with pytest.raises(InputError, match="a voxel's volume"):
        _session(_scan(), voxel_volume=volume)


def test_a_model_without_click_inputs_is_refused_with_advice(tiny_model_dir):
    """The advice named the CLI only; TrainConfig(clicks=True) trains such a model too."""
    with pytest.raises(ModelError, match=re.escape("does not take clicks; use one trained with clicks=True (lgg-unet "
                                                   "train --clicks)")):
        CorrectionSession(load_model(tiny_model_dir), _scan())


class _ClickAlsoDimsFarAway(_FollowsClicks):
    """A positive click that (wrongly) lowers the probability everywhere else, like an undertrained network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) - 20.0 * x[:, -2:-1].amax(dim=(-2, -1), keepdim=True)


def _big_session(height: int, width: int, network: torch.nn.Module, window: int | None) -> CorrectionSession:
    config = ModelConfig(preprocess=PreprocessConfig(image_size=256), inputs=InputConfig(clicks=True, click_reach=1))
    image = np.zeros((3, height, width), np.float32)
    image[:, 20:80, 20:80] = 100.0  # tumour where FLAIR is bright; the clicks below fall beside it or into it
    return CorrectionSession(LoadedModel(network.eval(), config, "test"), image, window=window)


@pytest.mark.parametrize("height, width", [(256, 256), (200, 240)])
def test_a_click_recomputes_only_the_window_around_it_and_agrees_there_with_whole_slices(height, width):
    windowed = _big_session(height, width, _FollowsClicks(), 128)
    whole = _big_session(height, width, _FollowsClicks(), None)
    before = windowed.probability.copy()
    for session in (windowed, whole):
        session.click(1, 150, 160, positive=True)
    changed = np.abs(windowed.probability - before) > 1e-4
    rows, cols = np.nonzero(changed.any(axis=0))
    assert changed[1, 150, 160]
    assert rows.max() - rows.min() < 128 and cols.max() - cols.min() < 128  # inside the window only
    np.testing.assert_allclose(windowed.probability[changed], whole.probability[changed], atol=1e-3)


def test_a_positive_click_never_lowers_a_probability_and_a_negative_one_never_raises_one():
    session = _big_session(256, 256, _ClickAlsoDimsFarAway(), 128)
    before = session.probability.copy()
    session.click(1, 150, 160, positive=True)
    assert (session.probability >= before).all() and (session.probability > before + 0.1).any()
    raised = session.probability.copy()
    session.click(1, 60, 60, positive=False)
    assert (session.probability <= raised).all() and (session.probability < raised - 0.1).any()


def test_undo_after_a_new_clean_up_gives_the_mask_of_that_clean_up():
    session = _session(_scan())
    session.click(2, 12, 12, positive=False)
    session.set_postprocess(PostprocessConfig(min_size=1000))  # drops every piece
    assert session.mask.sum() == 0
    assert session.undo().sum() == 0 and session.piece_count == 0


@pytest.mark.parametrize("postprocess", [{"min_size": 100}, {"keep_largest": True}])
def test_a_clean_up_changed_and_changed_back_gives_the_mask_the_clicks_gave(postprocess):
    probability = _two_pieces()
    probability[0:2, 20:30, 20:30] = 0
    probability[5, 4:10, 10:12] = 0.9  # a branch that the second click cuts off as the larger part
    session = _blank_session(probability, **postprocess)
    session.click(2, 6, 6, positive=False)
    session.click(0, 25, 25, positive=True)
    session.click(4, 6, 6, positive=False)
    clicked = session.mask.copy()
    np.testing.assert_array_equal(session.set_postprocess(session.postprocess), clicked)
    session.set_postprocess(PostprocessConfig(threshold=0.3))
    np.testing.assert_array_equal(session.set_postprocess(PostprocessConfig(**postprocess)), clicked)
    undone = session.undo()
    fresh = _blank_session(probability, **postprocess)
    fresh.click(2, 6, 6, positive=False)
    fresh.click(0, 25, 25, positive=True)
    np.testing.assert_array_equal(undone, fresh.mask)


def test_a_bad_clean_up_is_refused_and_the_session_still_takes_clicks():
    session = _session(_scan())
    with pytest.raises(InputError, match="PostprocessConfig"):
        session.set_postprocess({"threshold": 0.5})
    session.click(2, 12, 12, positive=False)
    assert not session.mask[2, 12, 12]


@pytest.mark.parametrize("probability, message", [(np.zeros((6, 32, 31)), "shape"), ([[1]], "shape"),
                                                  (np.full((6, 32, 32), np.nan), "from 0 to 1"),
                                                  (np.full((6, 32, 32), 2.0), "from 0 to 1")])
def test_bad_probabilities_are_refused(probability, message):
    with pytest.raises(InputError, match=message):
        _session(_scan(), probability=probability)


def test_a_numpy_integer_window_is_taken():
    assert _big_session(64, 64, _FollowsClicks(), np.int64(128)).window == 128


@pytest.mark.parametrize("window", [100, 32, 0, 128.0, True, 2048])
def test_a_bad_click_window_is_refused(window):
    with pytest.raises(InputError, match="click window"):
        _big_session(64, 64, _FollowsClicks(), window)


def test_a_click_whose_coordinate_is_too_large_for_a_float_is_outside_the_scan_and_changes_nothing():
    session = _session(_scan())
    before = session.mask.copy()
    with pytest.raises(InputError, match="outside the scan"):
        session.click(10**400, 12, 12)
    assert session.clicks == [] and np.array_equal(session.mask, before)


@pytest.mark.parametrize("click, message", [
    ((10**400, 12, 12), "the click (<a whole number of 401 digits>, 12, 12) lies outside the scan"),
    ((5, -(10**5000), 12), "the click (5, -<a whole number of 5001 digits>, 12) lies outside the scan"),
    ((5, np.uint64(2**64 - 1), 12), "the click (5, 18446744073709551615, 12) lies outside the scan"),
    ((10**400, "x" * 1000, 1), "a click needs three numbers (z, y, x), not (<a whole number of 401 digits>, 'xxxxx"),
])
def test_a_click_refused_for_a_huge_coordinate_says_so_in_one_short_line(click, message):
    """A script's 10**400 was repeated in full (400 digits), and one of 4300 digits or more failed with Python's own
    ValueError (int to str) instead of our refusal."""
    session = _session(_scan())
    with pytest.raises(InputError) as refused:
        session.click(*click)
    assert str(refused.value).startswith(message) and len(str(refused.value)) < 160, str(refused.value)
    assert session.clicks == []


def test_a_click_that_fails_while_the_network_runs_leaves_the_session_as_it_was(monkeypatch):
    from napari_lgg_unet.engine import corrections
    from napari_lgg_unet.engine.errors import DeviceError

    session = _session(_scan())
    mask, probability = session.mask.copy(), session.probability.copy()

    def out_of_memory(*args, **kwargs):
        raise DeviceError("out of memory")

    monkeypatch.setattr(corrections, "_recompute_near", out_of_memory)
    with pytest.raises(DeviceError):
        session.click(2, 12, 12, positive=False)
    assert session.clicks == [] and np.array_equal(session.mask, mask)
    np.testing.assert_array_equal(session.probability, probability)
    with pytest.raises(InputError, match="no click to undo"):  # no phantom click left behind to undo
        session.undo()


@pytest.mark.parametrize("shape", [(32, 32, 6), (6, 32 * 32), (6, 32, 32, 1)])
def test_given_probabilities_of_another_shape_are_refused_even_with_as_many_values(shape):
    with pytest.raises(InputError, match="shape"):
        _session(_scan(), probability=np.zeros(shape, np.float32))


def test_given_probabilities_of_a_2d_image_may_have_the_image_shape():
    image = _scan()[0]
    probability = np.zeros((32, 32), np.float32)
    probability[8:16, 8:16] = 0.9
    session = _session(image, probability=probability)
    assert session.mask.shape == (1, 32, 32) and session.mask[0, 12, 12] == 1


def _clicked_twice(**postprocess) -> CorrectionSession:
    session = _session(_scan(), options=SegmentOptions(postprocess=PostprocessConfig(min_size=20, **postprocess)))
    session.click(2, 12, 12, positive=False)
    session.click(4, 26, 26, positive=True)
    return session


def _assert_same_session(session: CorrectionSession, twin: CorrectionSession) -> None:
    """The same options, clicks, probabilities and mask, and undo steps that give the same masks."""
    assert session.options == twin.options and session.clicks == twin.clicks
    assert session.piece_count == twin.piece_count
    for name in ("mask", "piece_labels", "probability"):
        np.testing.assert_array_equal(getattr(session, name), getattr(twin, name), err_msg=name)
    while twin.clicks:
        np.testing.assert_array_equal(session.undo(), twin.undo())
        np.testing.assert_array_equal(session.probability, twin.probability)


def _failing_on_call(real, failing_call: int):
    calls = []

    def labels(*args, **kwargs):
        calls.append(1)
        if len(calls) == failing_call:
            raise MemoryError("out of memory (simulated)")
        return real(*args, **kwargs)

    return labels


@pytest.mark.parametrize("failing_call", [1, 2, 3])  # the automatic mask, after the first click, after the second
def test_a_clean_up_that_fails_midway_leaves_the_session_as_it_was(monkeypatch, failing_call):
    from napari_lgg_unet.engine import corrections

    session, twin = _clicked_twice(), _clicked_twice()
    monkeypatch.setattr(corrections, "kept_labels", _failing_on_call(corrections.kept_labels, failing_call))
    with pytest.raises(MemoryError):
        session.set_postprocess(PostprocessConfig(min_size=1000))
    monkeypatch.undo()
    _assert_same_session(session, twin)


def test_an_undo_that_fails_leaves_the_session_as_it_was_click_included(monkeypatch):
    from napari_lgg_unet.engine import corrections

    session, twin = _clicked_twice(), _clicked_twice()
    monkeypatch.setattr(corrections, "label_pieces", _failing_on_call(corrections.label_pieces, 1))
    with pytest.raises(MemoryError):
        session.undo()
    monkeypatch.undo()
    _assert_same_session(session, twin)


class _FollowsClicksMildly(_FollowsClicks):
    """Blank but for the clicks, which it follows to a probability of about 0.82 at the click: followed at a
    threshold of 0.5, refused at 0.9."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale / 40 * (2.5 * x[:, -2:-1] - 2.5 * x[:, -1:] - 1.0)


def _mild_session(threshold: float) -> CorrectionSession:
    postprocess = PostprocessConfig(threshold=threshold, min_size=0)
    config = ModelConfig(preprocess=PreprocessConfig(image_size=32), inputs=InputConfig(clicks=True, click_reach=1),
                         postprocess=postprocess)
    return CorrectionSession(LoadedModel(_FollowsClicksMildly().eval(), config, "test"), np.zeros((4, 32, 32)))


@pytest.mark.parametrize(("first", "then"), [(0.5, 0.9), (0.9, 0.5)])
def test_a_new_threshold_judges_again_whether_the_network_refused_a_click(first, then):
    """At 0.5 the network follows the "tumour" click; at 0.9 it refuses it and the click's disc is forced. Kept as
    made under the first threshold, a click followed at 0.5 left no tumour at its own spot at 0.9."""
    session = _mild_session(first)
    session.click(2, 16, 16, positive=True)
    session.click(1, 8, 24, positive=True)
    session.set_postprocess(PostprocessConfig(threshold=then, min_size=0))
    fresh = _mild_session(then)
    fresh.click(2, 16, 16, positive=True)
    fresh.click(1, 8, 24, positive=True)
    assert session.mask[2, 16, 16] == session.mask[1, 8, 24] == 1
    np.testing.assert_array_equal(session.mask, fresh.mask)
    np.testing.assert_array_equal(session.probability, fresh.probability)
    np.testing.assert_array_equal(session.undo(), fresh.undo())
    np.testing.assert_array_equal(session.probability, fresh.probability)
    np.testing.assert_array_equal(session.undo(), fresh.undo())


@pytest.mark.parametrize("edge", [(5.5, 0, 0), (0, 31.5, 31.5), (-0.5, -0.5, 31.5)])
def test_a_click_on_the_scans_edge_is_the_edge_voxels(edge):
    """The widget takes a click on the scan's far edge (data coordinate n - 0.5) as inside the image, as napari
    does; the session refused it as outside the scan, an error for a click on the scan."""
    session = _session(_scan())
    session.click(*edge, positive=True)
    voxel = tuple(int(np.clip(round(v), 0, n - 1)) for v, n in zip(edge, session.mask.shape))
    assert session.mask[voxel] == 1
    click = session.clicks[0]
    assert all(0 <= v <= n - 1 for v, n in zip((click.z, click.y, click.x), session.mask.shape))


def test_a_stop_asked_while_a_session_first_segments_the_scan_ends_it_between_batches_with_no_session():
    """A session made without probabilities segments the whole scan first (minutes for a large scan on a CPU); a stop
    asked meanwhile ends it after the batch in progress, and no session is made of the slices done so far."""
    asked = []
    with pytest.raises(Stopped):
        _session(_scan(), options=SegmentOptions(batch_size=2, precision="fp32"),
                 stop=lambda: asked.append(1) or len(asked) > 1)
    assert len(asked) == 2  # before the first batch, then before the second of three


def test_a_stop_asked_while_a_session_first_times_auto_precision_ends_that_timing_and_remembers_no_choice(
        monkeypatch, tmp_path):
    """The first 'auto' choice on a machine (or for new CPU threads) times the number formats (18 passes, 20 s on 2
    busy cores) before the session exists, and nothing could stop it: the Segment widget builds the session in a
    worker that closing its dock asks to stop."""
    from napari_lgg_unet.engine import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(precision.REMEASURE_ENV, raising=False)
    monkeypatch.setattr(precision, "_CHOSEN", {})
    timed, timing = [], precision.autocast
    monkeypatch.setattr(precision, "autocast", lambda candidate: timed.append(candidate) or timing(candidate))
    with pytest.raises(Stopped):
        _session(_scan(), probability=np.zeros((6, 32, 32), np.float32), stop=lambda: bool(timed))
    assert len(timed) == 1 and precision._CHOSEN == {} and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("steps_done", [0, 1, 2])  # stopped before the automatic mask, the first click, the second
def test_a_stop_asked_while_a_new_clean_up_replays_the_clicks_ends_it_and_leaves_the_session_as_it_was(steps_done):
    """A new clean-up replays every click (one labelling of the scan each: minutes for many clicks on a 155-slice
    scan); closing the dock or a new segmentation meanwhile waited for all of it. A stop now ends it before the next
    click, and nothing of the half-done replay reaches the session."""
    session, twin = _clicked_twice(), _clicked_twice()
    asked = []
    with pytest.raises(Stopped):
        session.set_postprocess(PostprocessConfig(min_size=1000),
                                stop=lambda: asked.append(1) or len(asked) > steps_done)
    assert len(asked) == steps_done + 1
    _assert_same_session(session, twin)
