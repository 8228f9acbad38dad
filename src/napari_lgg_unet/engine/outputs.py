"""Where masks may be written: never onto, or into, a file or case that a job reads, so a mask can never replace a
scan, its labels or another case's slices.

Paths are compared after resolving links, so a link to an input is that input, and as the file system knows them,
so another spelling of an input (a case-only difference on a case-insensitive disk) or another name of it (a hard
link) is that input too. A case's folder counts as part of the case when it is named after it (a Kaggle patient
folder, a BraTS or plain case folder, a DICOM folder): a mask written into it would become one of the case's files on
the next run. A cohort's output folder inside its input root is not a case: `outside` leaves out the masks lying in
it, so a cohort can be run again into the same folder.
"""

from __future__ import annotations

import errno
import os
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from .errors import InputError, ModelError
from .formats import TIFF, file_format, scan_name, strip_volume_suffix, volume_suffix
from .io import ScanSource
from .sequences import LABELS, NAMES, grouped_by_case, split_file_name


def input_paths(source: ScanSource) -> list[Path]:
    """The files and folders `source` is read from, links resolved: a Kaggle patient folder itself; a TIFF file with
    the existing masks a reader pairs with it and its folder when that is a Kaggle patient folder (a file there is
    read as one of the patient's slices); a case's sequence files (or DICOM folders), its labels, and its folder when
    that folder is the case's own. A volume file stands for its whole case, as load_scan reads it (its sibling
    sequences and labels)."""
    from .cases import Case, case_of_file

    if not isinstance(source, Case):
        path = Path(source)
        if path.is_dir() or volume_suffix(path) is None or not path.exists():
            path = path.resolve()  # a folder, a TIFF, or no scan at all (reading it says so)
            return [path, *_tiff_companions(path)]
        source = case_of_file(path)
    paths = [s.path for _, s in source.sequences] + ([source.labels.path] if source.labels else [])
    # named as given or as it is: a BraTS case read through a link (`link/P1_flair.nii.gz`) is still P1's own folder
    own_folders = {p.parent for p in paths if source.name in (p.parent.name, p.parent.resolve().name)}
    return [p.resolve() for p in (*own_folders, *paths)]


def _tiff_companions(path: Path) -> list[Path]:
    """The masks already paired with the TIFF scan `path` (`X_mask.tif`, or `X_` with another labels word of
    sequences.py: `_seg`, `_label`, ...; any case; beside `X.tif` or `X_image.tif`, as the Kaggle dataset and the
    packaged sample name them: a user's manual masks) and its
    folder when the file is named after it (a Kaggle patient). A paired name not yet taken is free for the scan's new
    mask. When `path` is itself such a mask (opened as a labels layer), its scan and the scan's other masks are its
    companions: a mask edited and saved must not land on the image it outlines."""
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return []
    kinds, suffixes = tuple(f"_{word}" for word in NAMES[LABELS]), (".tif", ".tiff")
    stem = path.stem.lower()
    scan = next((stem.removesuffix(kind) for kind in kinds if stem.endswith(kind)), None)
    stems = {stem, stem.removesuffix("_image")} | ({scan, f"{scan}_image"} if scan else set())
    names = {f"{s}{kind}{suffix}" for s in stems for kind in kinds for suffix in suffixes}
    names |= {f"{s}{suffix}" for s in stems for suffix in suffixes} if scan else set()
    folder = [path.parent] if path.name.startswith(f"{path.parent.name}_") else []
    return folder + [other for other in path.parent.iterdir() if other.name.lower() in names and other != path]


def where(source: ScanSource) -> Path:
    """The one path that names `source` in a message: its case folder when it has one, else its first file."""
    return input_paths(source)[0]


def output_path(output: str | Path) -> Path:
    """`output` with its links resolved; a link on its path that loops is refused by name, as an input's is
    (io.existing_path): Path.resolve raises RuntimeError for it before Python 3.13, which the CLI reported as an
    internal error."""
    try:
        os.stat(output)
    except OSError as error:  # a missing file or folder is what an output usually is
        if error.errno == errno.ELOOP:
            raise InputError(f"cannot write {output}: {error.strerror}") from None
    return Path(output).resolve()


def check_not_the_input(output: str | Path, input_path: Path) -> None:
    """Refuse an `output` that is the `input_path` itself: a scan file would be replaced by its mask; masks written
    into the folder a cohort (or a scan's files) is read from would be read by the next run as cases or manual masks."""
    if output_path(output) != input_path.resolve():
        return
    if input_path.is_dir():
        raise InputError("--output is the same folder as --input: masks written into the folder the scans are read "
                         "from would be read by the next run as scans or as their manual masks; "
                         "write them to another folder")
    raise InputError("--output is the same path as --input; the scan would be replaced by its mask")


def check_output(output: str | Path, sources: Sequence[ScanSource], folder: bool = False,
                 what: str = "the input", replacing: str = "--overwrite or not") -> None:
    """Refuse an `output` that is, or is inside, a file or case folder of `sources` (`what` they are, for the
    message; `replacing`: that the front end's way of asking to replace a file does not change that, in its words,
    the CLI's by default). A `folder` of masks is also refused where scan files lie directly: the next run would read
    its masks (`<scan>_mask.*`) with those scans, as their manual masks. Not beside case folders (ROOT for ROOT/P1):
    ROOT holds no scan file, and a mask named after a case beside its folder is left out of ROOT by name
    (io.find_scans)."""
    target = output_path(output)
    for source in sources:
        paths = input_paths(source)
        if (hit := landing(target, paths)) is not None:
            raise InputError(_landing_refusal(output, hit, what, replacing))
        if folder and (hit := next((p.parent for p in paths if p.is_file() and _same(target, p.parent)), None)):
            raise InputError(f"output {output} is {hit}, the folder of the input's scan files, where the next run "
                             "would read its masks with those scans (as their manual masks); write it elsewhere")
        if (case := _case_it_would_join(target, paths)) is not None:
            raise InputError(f"output {output} would be read as a file of {case}, an input (its name groups it "
                             "with that scan's files); give it another name or write it elsewhere")
        if (scan := _loose_volume_beside(target, paths)) is not None:
            raise InputError(f"output {output} is a TIFF beside the volume scan {scan.name}, an input: its folder "
                             "would no longer be read as a folder of scans (a TIFF stack is read only by itself); "
                             f"write it as a {volume_suffix(scan)} file, or elsewhere")


def _landing_refusal(output: str | Path, hit: Path, what: str, replacing: str) -> str:
    """Why `output` may not be written on or in `hit`, a file or folder of `what`. A mask beside its scan (the first
    one written there: `_case_it_would_join`) is read as the scan's manual mask from then on, and may have been
    corrected by hand: "part of the input" named no reason for refusing a run that had written it, --overwrite given
    (`replacing`, see `check_output`)."""
    stem = strip_volume_suffix(hit.name) if volume_suffix(hit) else hit.stem
    if hit.is_file() and split_file_name(stem)[1] == LABELS:
        return (f"output {output} is the manual mask read with the input ({hit.name}: it may hold corrections made by "
                f"hand), which no mask written from that scan replaces, {replacing}; write it elsewhere, or move that "
                "mask away first")
    return f"output {output} would land on or in {hit}, which is part of {what}; write it outside {what}"


def landing(output: str | Path, paths: Sequence[Path]) -> Path | None:
    """The first of `paths` (resolved) that `output` is or lies in, as the file system knows them: on a
    case-insensitive disk (macOS, Windows) `p1/P1_FLAIR.nii.gz` is the scan `P1/P1_flair.nii.gz` and lies in its
    folder `P1`, which comparing the paths does not see; a hard link (or a bind mount) is another name likewise."""
    target = output_path(output)
    here = {identity for identity in map(_identity, (target, *target.parents)) if identity is not None}
    return (next((p for p in paths if target == p), None)
            or next((p for p in paths if target.is_relative_to(p)), None)
            or next((p for p in paths if _identity(p) in here), None))


def _same(path: Path, other: Path) -> bool:
    """Whether two resolved paths name one file or folder, however spelled (see `landing`)."""
    identity = _identity(path)
    return path == other or (identity is not None and identity == _identity(other))


def _identity(path: Path) -> tuple[int, int] | None:
    """The file or folder `path` names (device and inode), or None where there is none: two spellings of one file,
    or two names of it (a hard link), have one identity."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _loose_volume_beside(target: Path, paths: list[Path]) -> Path | None:
    """The loose volume file of `paths` that a TIFF `target` would lie beside: io.py refuses a folder holding a TIFF
    stack beside other scans, so the mask written there stopped the scan's folder from being read (`predict folder/`
    and napari alike), a `.tif` being the one mask format that is not a volume. A case folder's own files are
    protected whole (`landing`)."""
    if file_format(target) is not TIFF:
        return None
    return next((path for path in paths if path.parent == target.parent and volume_suffix(path)), None)


def _case_it_would_join(target: Path, paths: list[Path]) -> str | None:
    """The case of the input files `paths` that a volume file `target` beside them would corrupt, by the naming that
    groups a folder's files into cases: named as a sequence (`X_t1c.nii.gz`, or `X.nii.gz`, read as FLAIR), it would
    be read as one of the case's images next time; named as labels (`X_mask.nii.gz`) where the case has its own
    (`X_seg.nii.gz`), the case would hold two and no longer read. A first labels file beside the scan is allowed: it
    is the case's mask when the case is opened again."""
    if volume_suffix(target) is None:
        return None
    beside = {path.name: _case_key(path) for path in paths if path.parent == target.parent and volume_suffix(path)}
    grouped = grouped_by_case({**beside, target.name: _case_key(target)})  # as the folder would be read next time
    key, role = grouped.pop(target.name)
    same = [other_role for other_key, other_role in grouped.values() if other_key == key]
    if same and (role != LABELS or LABELS in same):
        return key or target.parent.name
    return None


def _case_key(path: Path) -> tuple[str, str | None]:
    return split_file_name(strip_volume_suffix(path.name))


def model_folders(model: str | Path) -> list[Path]:
    """The folders no output may land on or in while `model` (a folder or 'default') runs: its own, whose config and
    weights a mask or report would replace, and the packaged default model's, which every later run relies on.
    A folder holding neither a config nor weights is refused as no model first: with the output in it, it was refused
    as "part of a model folder", which sent the user looking for a model where there is none. Nothing is read (a
    damaged model is told once the output's name passes)."""
    from .model import CONFIG_FILE, WEIGHTS_FILE, default_model_path, resolve_model_path  # torch: not for the writer

    path = resolve_model_path(model)
    if path.is_dir() and not any(os.path.lexists(path / name) for name in (CONFIG_FILE, WEIGHTS_FILE)):
        raise ModelError(f"{path} is not a model folder: it has no {CONFIG_FILE}")
    return [path, default_model_path()]


def outside(sources: Sequence[ScanSource], output: str | Path) -> list[ScanSource]:
    """`sources` less the masks of an earlier run into the folder `output` kept inside the input root: cases of
    labels alone (`<case>_mask.nii.gz` reads as one) lying in it. A real scan there stays, for check_output."""
    from .cases import Case

    target = output_path(output)
    return [s for s in sources if not (isinstance(s, Case) and not s.sequences
                                       and all(p.is_relative_to(target) for p in input_paths(s)))]


def check_unique_names(sources: Sequence[ScanSource]) -> None:
    """Refuse cases that share a name: their masks, summary rows and finished-mask checks would be one. One of them
    is most often a mask alone, an earlier run's output kept inside the input root: the message says so, since it
    reads as a second case only because of its name (`P1_mask.nii.gz`)."""
    from .cases import Case

    named: dict[str, list[ScanSource]] = defaultdict(list)
    for source in sources:
        named[scan_name(source)].append(source)
    for name, same in named.items():
        if len(same) > 1:
            masks = [where(s) for s in same if isinstance(s, Case) and not s.sequences]
            advice = (f"{masks[0]} is a mask alone, perhaps an earlier run's: write into its folder again, or move "
                      "it out of the input" if masks else "rename one or segment them into different folders")
            raise InputError(f"two cases are named {name} ({where(same[0])} and {where(same[1])}), so their masks "
                             f"would overwrite each other; {advice}")
