"""Every control's tooltip, in one table keyed by the control's name; training settings use their declared help.

`explain` sets them on a widget and everything inside it, so a new control needs one line here (a test checks that
every control of both widgets has one).
"""

from __future__ import annotations

from magicgui.widgets import Container, Widget

from ..engine.settings import TrainConfig, settings_of
from .layers import LayerPicker

TOOLTIPS = {
    # what to segment or train on
    "image": "The scan: a grey FLAIR layer or one layer with (pre-contrast, FLAIR, post-contrast) channels",
    "pre_contrast": f"Optional pre-contrast T1 layer of the same scan; {LayerPicker.null_string} uses FLAIR in its "
                    "place",
    "post_contrast": f"Optional post-contrast T1 layer of the same scan; {LayerPicker.null_string} uses FLAIR in its "
                     "place",
    "labels": "The tumour painted on this image (any value above 0 is tumour); only its labelled slices are used "
              "when 'Skip slices without labels' is on",
    "add_pair": "Train on one more (image, labels) pair",
    "remove_pair": "Drop the last (image, labels) pair",
    "folder": "Optional Kaggle-style folder of patients (slices with _mask files) trained on with the pairs; all "
              "its slices are used, as its masks label every one",
    # the model and where it runs
    "model": "The model: the default one shipped with the plugin, one trained in this session, or a folder",
    "model_folder": "A model folder holding config.json and model.safetensors",
    "device": "Where the U-Net runs; auto picks a CUDA GPU, then Apple MPS, then the CPU",
    "device_note": "What 'auto' picks on this machine, or what the last run used",
    "start_from": "Train from scratch, or fine-tune the default model, a session model or a model folder",
    "output": "A new run-<date> folder is made in here for each training run, so no model is overwritten",
    # segmentation clean-up and readouts
    "tta": "Also segment the mirrored scan and average both: a little more accurate, twice as slow",
    "threshold": "Tumour where the probability is at least this (the model's calibrated value is shown first)",
    "min_size": "Drop tumour pieces (3D) with fewer voxels than this",
    "keep_largest": "Keep only the largest 3D tumour piece (can lose the tumour when a false piece is larger)",
    "min_confidence": "Drop tumour pieces whose highest probability is below this",
    "show_probability": "Also show the model's probability map as a layer",
    "segment_button": "Segment the chosen image in the background; the result is a new Labels layer",
    "cancel_button": "Stop segmenting; no layer is changed",
    "progress": "Slices segmented so far",
    "truth": "Optional ground-truth Labels layer to score the prediction against (Dice, IoU, accuracy)",
    "readout": "Tumour size and, with a ground truth, scores for the whole volume and the slice on screen",
    "csv_path": "Where 'Save readouts CSV' writes the readouts",
    "save_button": "Save the readouts shown above as a CSV file",
    # corrections and review
    "correct": "Correction mode: a click on the scan marks tumour, Shift+click (or a right click) marks no tumour; "
               "the model re-segments the clicked slice and its neighbours (needs a click-conditioned model)",
    "undo_click": "Take the last correction click back",
    "pieces_caption": "How many tumour pieces the mask has; the least sure are listed first",
    "pieces": "The tumour's 3D pieces, least sure first: untick Keep to remove one, click a row to go there",
    # training run
    "augment": "Random flips, rotations, zoom, intensity changes, skull stripping and missing sequences while "
               "training, so the model copes with scans unlike the training ones",
    "train_button": "Start training in the background; while it runs, Stop ends it after the current step and "
                    "keeps the best model",
    "status": "What training is doing now",
    "epoch_progress": "Epochs finished",
    "step_progress": "Steps finished in this epoch",
}


def tooltip(name: str) -> str:
    """The text for the control called `name`: the table's, else the training setting's declared help."""
    if name in TOOLTIPS:
        return TOOLTIPS[name]
    declared = settings_of(TrainConfig).get(name)
    return "" if declared is None else declared.help[0].upper() + declared.help[1:]


def explain(container: Container) -> None:
    """Set the tooltip of every control inside `container` (nested groups included) from its name."""
    for widget in container:
        if isinstance(widget, Container):
            explain(widget)
        elif isinstance(widget, Widget):
            widget.tooltip = tooltip(widget.name)
