"""sequences: which MRI sequence a file name, a channel name or a DICOM series description means."""

import pytest

from napari_lgg_unet.engine.sequences import (
    FLAIR, FLAIR_CHANNEL, LABELS, MODEL_CHANNELS, POST, PRE, T2, sequence_of, split_sequence,
)


def test_flair_sits_in_the_model_channels_where_flair_channel_says():
    assert MODEL_CHANNELS[FLAIR_CHANNEL] == FLAIR and set(MODEL_CHANNELS) == {PRE, FLAIR, POST}


@pytest.mark.parametrize("stem, case, role", [
    ("Brats18_TCIA10_628_1_t1ce", "Brats18_TCIA10_628_1", POST),
    ("BraTS-GLI-00000-000-t2f", "BraTS-GLI-00000-000", FLAIR),
    ("BraTS-GLI-00000-000-t1n", "BraTS-GLI-00000-000", PRE),
    ("case7_T2_FLAIR", "case7", FLAIR),  # two words beat the last one alone (T2 would be wrong)
    ("case7_t2", "case7", T2),
    ("case7_seg", "case7", LABELS),
    ("T1_post", "", POST),
    ("scan", "scan", None),
])
def test_file_names_split_into_case_and_sequence(stem, case, role):
    assert split_sequence(stem) == (case, role)


@pytest.mark.parametrize("text, role", [
    ("AX T2 FLAIR", FLAIR), ("T1 POST GD", POST), ("t1gd", POST), ("Sag T1", PRE), ("DWI b1000", None),
])
def test_free_text_names_their_sequence_or_none(text, role):
    assert sequence_of(text) == role
