import json

import pytest

from napari_lgg_unet.cli import main
from napari_lgg_unet.sample_data import SAMPLE_PATIENT


def test_cli_evaluates_an_input_variant(sample_patient_dir, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(sample_patient_dir),
            "--input-variant", "skull-stripped", "--min-confidence", "0.9", "--json", str(out)]
    assert main(argv) == 0
    assert SAMPLE_PATIENT in json.loads(out.read_text())["patients"]


def test_two_patients_of_one_name_are_refused_before_any_is_segmented(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """Two folders each holding a patient P1 (and a P2) were scored as four rows, but the report is keyed by name: the
    JSON and the means held two of them ('4 patients: mean Dice' over 2), and under torchrun rank 0 printed two."""
    import nibabel as nib
    import numpy as np

    from napari_lgg_unet.engine import cohort

    rng = np.random.default_rng(0)
    for folder in ("A", "B"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        for patient in ("P1", "P2"):
            image, mask = rng.random((24, 24, 3)).astype(np.float32), np.zeros((24, 24, 3), np.uint8)
            mask[5:9, 5:9, 1] = 1
            nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "data" / folder / f"{patient}.nii.gz")
            nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "data" / folder / f"{patient}_mask.nii.gz")
    monkeypatch.setattr(cohort, "segment_scan", lambda *_, **__: pytest.fail("refused only after segmenting"))
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(tmp_path / "data"), "--json",
            str(tmp_path / "r.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "two patients are named P1" in err and len(err.strip().splitlines()) == 1
    assert "in separate runs, each given as folders (--data)," in err  # as evaluate_patients and the CLI take them
    assert not (tmp_path / "r.json").exists()


def _rank_1_of_2(their_variants):
    """Rank 1 of a two-process job whose rank 0 was started alike but with `their_variants` (`Group.check_same`)."""
    from napari_lgg_unet.engine.distributed import Group

    class RankOne(Group):
        def broadcast_text(self, text):
            return json.dumps({key: value if key == "cases" else their_variants
                               for key, value in json.loads(text).items()})

        def sum(self, values):
            return [float(v) for v in values]

    return RankOne(rank=1, world=2)


@pytest.mark.parametrize("what", ["evaluate", "calibrate"])
def test_a_process_started_with_other_input_variants_is_refused_naming_them_as_the_api_and_the_cli_do(
        sample_patient_dir, tiny_model_dir, what):
    """The refusal named `variant` / `variants` alone, which meant nothing to a CLI user who gave --input-variant(s)."""
    from napari_lgg_unet.engine.calibrate import validation_cases
    from napari_lgg_unet.engine.errors import InputError
    from napari_lgg_unet.engine.evaluate import evaluate_patients
    from napari_lgg_unet.engine.model import load_model
    from napari_lgg_unet.engine.predict import SegmentOptions

    model, folders = load_model(tiny_model_dir), [sample_patient_dir]
    with pytest.raises(InputError) as refused:
        if what == "evaluate":
            evaluate_patients(model, folders, SegmentOptions(), "flair-only", _rank_1_of_2("as-is"))
        else:
            validation_cases(model, folders, variants=("flair-only",), group=_rank_1_of_2(["as-is"]))
    named = "variant (--input-variant) 'as-is'" if what == "evaluate" else "variants (--input-variants) ['as-is']"
    assert f"was started otherwise than process 0: {named} on process 0" in str(refused.value)
