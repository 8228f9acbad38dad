"""Carry the LGG training slices to a lent GPU machine, whose working tree travels in calls of at most 64 MiB.

The Kaggle folder is 216 MB of LZMA TIFFs; the project's own tree takes about 29 MB of each call. So the slices go
in parts: `pack` writes each patient as one file (each slice as lossless WebP, 20 % smaller than LZMA here, which
the machine's Pillow reads; the mask as bits) into parts of at most --part-mib, and a manifest with each patient's
checksum; `unpack`, run on the GPU machine after each call, writes the patients of the parts that came with it back
into the dataset's own layout and checks every checksum, so training there reads exactly the pixels and masks
training reads here. Unpacked patients stay while the machine is warm (an ignored folder is kept between calls),
so one call per part, then the training call (scripts/gpu_train.sh).

    python scripts/gpu_data.py pack ../shared/data/lgg/kaggle_3m .gpu-pack --part-mib 30
    python scripts/gpu_data.py unpack .gpu-pack .gpu-data/kaggle_3m      # there; exit 3 while parts are missing
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from napari_lgg_unet.engine.atomic import atomic_path
from napari_lgg_unet.engine.errors import InputError, describe
from napari_lgg_unet.engine.io import load_patient, patient_folders, write_mask_tiff

MANIFEST = "manifest.json"
INCOMPLETE = 3  # unpack's exit status while some of the manifest's patients have not arrived yet


def _checksum(image: np.ndarray, mask: np.ndarray) -> str:
    """The pixels and masks as training reads them (`load_patient`), so equal sums mean equal training data."""
    digest = hashlib.sha256()
    for array in (image, mask):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _encoded(image: np.ndarray, mask: np.ndarray) -> bytes:
    """One patient's RGB slices as lossless WebP, end to end, and its mask as bits, in one npz (no pickles)."""
    slices = []
    for slice_image in image:
        buffer = io.BytesIO()
        Image.fromarray(slice_image).save(buffer, format="WEBP", lossless=True, quality=90, method=4)
        slices.append(np.frombuffer(buffer.getvalue(), np.uint8))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, webp=np.concatenate(slices), ends=np.cumsum([len(s) for s in slices]),
                        mask=np.packbits(mask), shape=np.array(mask.shape))
    return buffer.getvalue()


def _decoded(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    arrays = np.load(io.BytesIO(data))
    webp, ends, shape = arrays["webp"], arrays["ends"], tuple(arrays["shape"])
    image = np.stack([np.asarray(Image.open(io.BytesIO(webp[start:end].tobytes())).convert("RGB"))
                      for start, end in zip([0, *ends[:-1]], ends)])
    mask = np.unpackbits(arrays["mask"], count=int(np.prod(shape))).reshape(shape).astype(bool)
    return image, mask


def pack(root: Path, target: Path, part_mib: float) -> None:
    """Every patient of `root` as `<part>/<patient>.npz`, parts filled in name order up to `part_mib` each."""
    if target.exists():
        sys.exit(f"{target} exists; remove it or pack into a new folder")
    limit, part, used, manifest = part_mib * 2**20, 1, 0, {}
    for folder in patient_folders(root):
        scan = load_patient(folder, require_masks=True)
        if scan.image.ndim != 4 or scan.image.shape[-1] != 3 or scan.image.dtype != np.uint8:
            sys.exit(f"{folder}: slices of {scan.image.shape[1:]} {scan.image.dtype}; this packs the dataset's RGB "
                     "uint8 slices only")
        data = _encoded(scan.image, scan.mask)
        if used and used + len(data) > limit:
            part, used = part + 1, 0
        path = target / f"part-{part}" / f"{folder.name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        used += len(data)
        manifest[folder.name] = {"part": part, "slices": len(scan.image), "sha256": _checksum(scan.image, scan.mask)}
        print(f"{folder.name}: {len(scan.image)} slices, {len(data) / 2**20:.1f} MiB, part {part}", flush=True)
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1))
    sizes = [sum(f.stat().st_size for f in (target / f"part-{k}").iterdir()) / 2**20 for k in range(1, part + 1)]
    print(f"{len(manifest)} patients in {part} parts of {', '.join(f'{s:.1f}' for s in sizes)} MiB")


def unpack(source: Path, target: Path) -> int:
    """Write the patients that arrived into `target` in the dataset's layout; 0 once all of them are there."""
    manifest = json.loads((source / MANIFEST).read_text())
    for packed in sorted(source.glob("part-*/*.npz")):
        name = packed.name.removesuffix(".npz")
        if (target / name / ".complete").exists():
            continue
        image, mask = _decoded(packed.read_bytes())
        if _checksum(image, mask) != manifest[name]["sha256"]:
            sys.exit(f"{packed} does not match its checksum in the manifest; pack again")
        folder = target / name
        folder.mkdir(parents=True, exist_ok=True)
        for number, (slice_image, slice_mask) in enumerate(zip(image, mask), start=1):
            with atomic_path(folder / f"{name}_{number}.tif") as path:
                tifffile.imwrite(path, slice_image)
            write_mask_tiff(folder / f"{name}_{number}_mask.tif", slice_mask)
        scan = load_patient(folder, require_masks=True)
        if _checksum(scan.image, scan.mask) != manifest[name]["sha256"]:
            sys.exit(f"{folder} does not read back as packed; check the disk there")
        (folder / ".complete").touch()
    present = sum((target / name / ".complete").exists() for name in manifest)
    print(f"{present} of {len(manifest)} patients unpacked in {target}")
    return 0 if present == len(manifest) else INCOMPLETE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="a Kaggle-style folder into parts")
    packing.add_argument("root", type=Path)
    packing.add_argument("target", type=Path)
    packing.add_argument("--part-mib", type=float, default=30.0, help="largest part (default: 30)")
    unpacking = commands.add_parser("unpack", help="the parts that are here into a Kaggle-style folder")
    unpacking.add_argument("source", type=Path)
    unpacking.add_argument("target", type=Path)
    args = parser.parse_args()
    try:
        if args.command == "pack":
            pack(args.root, args.target, args.part_mib)
        else:
            sys.exit(unpack(args.source, args.target))
    except (InputError, OSError) as error:  # a wrong path, an unreadable patient, a part missing its manifest
        sys.exit(f"gpu_data {args.command}: {error if isinstance(error, InputError) else describe(error)}")


if __name__ == "__main__":
    main()
