"""Which MRI sequence a file name, a `dataset.json` channel name or a DICOM series description means.

The model's channels are (pre-contrast T1, FLAIR, post-contrast T1), the LGG dataset's order; T2 is recognised so it
can be skipped, and label files (BraTS `_seg`, `_mask`, `_label`) so they become the ground truth.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

PRE, FLAIR, POST, T2, LABELS = "pre-contrast T1", "FLAIR", "post-contrast T1", "T2", "labels"
MODEL_CHANNELS = (PRE, FLAIR, POST)
FLAIR_CHANNEL = MODEL_CHANNELS.index(FLAIR)  # where FLAIR sits in the model's input
LAYER_NAMES = {FLAIR: "FLAIR", PRE: "T1", POST: "T1c", T2: "T2"}  # as a radiologist's viewer names them

# Names compared with separators removed and lower-cased: "T1_post" -> "t1post", "t2-flair" -> "t2flair".
NAMES = {
    FLAIR: ("flair", "t2f", "t2flair"),
    POST: ("t1ce", "t1c", "t1gd", "t1post", "t1wce", "t1contrast", "t1gad"),
    PRE: ("t1", "t1n", "t1w", "t1pre", "t1native"),
    T2: ("t2", "t2w"),
    LABELS: ("seg", "mask", "label", "labels", "segmentation"),
}
_BY_NAME = {name: role for role, names in NAMES.items() for name in names}
_TRAILING_SEPARATORS = re.compile(r"[^A-Za-z0-9]+$")
_WORD = re.compile(r"[A-Za-z0-9]+")


def split_sequence(stem: str) -> tuple[str, str | None]:
    """(case name, sequence) from a file name without its suffix, the sequence being its last one or two words.

    "Brats18_TCIA10_628_1_t1ce" -> ("Brats18_TCIA10_628_1", POST); "BraTS-GLI-00000-000-t2f" -> (..., FLAIR);
    "T1_post" -> ("", POST); "scan" -> ("scan", None).
    """
    words = list(_WORD.finditer(stem))
    for count in (2, 1):
        if len(words) >= count and (role := _BY_NAME.get("".join(w.group() for w in words[-count:]).lower())):
            return _TRAILING_SEPARATORS.sub("", stem[: words[-count].start()]), role
    return stem, None


def split_file_name(stem: str) -> tuple[str, str | None]:
    """`split_sequence` for a volume file's name, which may also name labels with the labels word before the sequence
    they were drawn on ("seg_flair", "P1_mask_t2" -> ("P1", LABELS)): read as that sequence, such a mask was
    segmented as a scan of a case of its own."""
    key, role = split_sequence(stem)
    if role not in (None, LABELS) and (drawn_on := split_sequence(key))[1] == LABELS:
        return drawn_on[0], LABELS
    return key, role


# Words users put between a case's name and the labels word ("P1_tumor_mask", "lesion_seg"), besides sequence names.
LABEL_QUALIFIERS = ("tumor", "tumour", "lesion", "lesions", "roi", "gt", "groundtruth", "truth", "manual", "wt")


def shorter_names(key: str) -> Iterator[str]:
    """`key` without its last word, again and again, while that word is a sequence, labels or qualifier word:
    "P1_flair_tumor" -> "P1_flair", "P1"; "Segmentation" -> "". The case names a labels file's name may stand for."""
    while words := list(_WORD.finditer(key)):
        head, role = split_sequence(key)
        if role is None:
            if words[-1].group().lower() not in LABEL_QUALIFIERS:
                return
            head = _TRAILING_SEPARATORS.sub("", key[: words[-1].start()])
        key = head
        yield key


def grouped_by_case(named: dict[str, tuple[str, str | None]]) -> dict[str, tuple[str, str | None]]:
    """`named` (file name -> (case key, sequence), as `split_file_name` reads each) with each labels file whose key is
    no scan's given the nearest of its `shorter_names` that is: "P1_tumor_mask" beside "P1_flair" is P1's labels.
    The one grouping of a folder's names, for reading cases (cases.py) and for checking that an output would not join
    one (outputs.py): checked by its own rule, `X_mask` beside `X_flair` and `X_tumor_seg` was allowed, and X then
    held two labels files and no longer read. A labels file named by labels words alone (3D Slicer's
    "Segmentation-label", "seg") beside the scans of one case is that case's ("MRHead.nii.gz"): it names no other."""
    scans = {key for key, sequence in named.values() if sequence != LABELS}
    only = next(iter(scans)) if len(scans) == 1 else None

    def owner(key: str) -> str:
        names = [key, *shorter_names(key)]
        return next((k for k in names if k in scans), only if only is not None and "" in names else key)

    return {name: (owner(key), LABELS) if sequence == LABELS else (key, sequence)
            for name, (key, sequence) in named.items()}


def sequence_of(text: str) -> str | None:
    """The sequence a free-text name says ("AX T2 FLAIR", "T1 POST GD", "t1gd"), or None; word pairs win over words."""
    words = [w.lower() for w in _WORD.findall(text)]
    pairs = ["".join(words[i : i + 2]) for i in range(len(words) - 1)]
    return next((_BY_NAME[w] for w in pairs + words if w in _BY_NAME), None)
