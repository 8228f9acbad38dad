import json

from napari_lgg_unet.cli import main
from napari_lgg_unet.sample_data import SAMPLE_PATIENT


def test_cli_evaluates_an_input_variant(sample_patient_dir, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(sample_patient_dir),
            "--input-variant", "skull-stripped", "--min-confidence", "0.9", "--json", str(out)]
    assert main(argv) == 0
    assert SAMPLE_PATIENT in json.loads(out.read_text())["patients"]
