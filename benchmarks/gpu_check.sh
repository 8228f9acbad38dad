#!/usr/bin/env bash
# One call on a lent GPU machine proves the CUDA path: the CUDA tests, segmenting the packaged sample on the GPU,
# a short bf16 training with context and clicks, a 2-process DDP run when there are 2 GPUs; one table printed last.
#
# The GPU machine has python3 with torch, tifffile and timm, but not segmentation-models-pytorch or nibabel, and no
# network. SimpleITK (DICOM, NRRD, MHA only) stays behind: its 50 MB wheel would not fit the 64 MiB that travel.
# Once, here (.whl is ignored):
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl segmentation-models-pytorch nibabel
# then run it there (carry .whl):   bash benchmarks/gpu_check.sh
# DEVICE=cpu runs the same steps on a machine without a GPU (to check the script itself).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
CLI="$PY -m napari_lgg_unet.cli"
rows=()
step() {  # step NAME COMMAND...: run, keep its log, remember pass/fail and seconds
  local name=$1; shift
  local started=$SECONDS
  if "$@" >"$OUT/$name.log" 2>&1; then status=pass; else status=FAIL; fi
  rows+=("$(printf '%-22s %-5s %5ss  %s' "$name" "$status" $((SECONDS - started)) "$(tail -n 1 "$OUT/$name.log" | cut -c1-90)")")
}
SAMPLE="$OUT/sample/TCGA_CS_6665_20010817"
$PY - "$SAMPLE" <<'PY'
import sys, pathlib, tifffile
from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder
out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
image = tifffile.imread(sample_folder() / f"{SAMPLE_PATIENT}_image.tif")
mask = tifffile.imread(sample_folder() / f"{SAMPLE_PATIENT}_mask.tif")
for z in range(len(image)):
    tifffile.imwrite(out / f"{SAMPLE_PATIENT}_{z + 1}.tif", image[z])
    tifffile.imwrite(out / f"{SAMPLE_PATIENT}_{z + 1}_mask.tif", mask[z])
PY
$PY -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.device_count(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" >"$OUT/gpu.txt" 2>&1
step cuda-tests $PY -m pytest -q -p no:cacheprovider tests/engine/test_cuda.py tests/engine/test_precision.py
step segment-sample $CLI predict --model default --input "$SAMPLE" --output "$OUT/mask.tif" --device "$DEVICE"
step evaluate-sample $CLI evaluate --model default --data "$OUT/sample" --device "$DEVICE"
step train-bf16 $CLI train --data "$OUT/sample" --out "$OUT/run" --device "$DEVICE" --precision "$([ "$DEVICE" = cuda ] && echo bf16 || echo fp32)" \
  --epochs 2 --steps-per-epoch 10 --batch-size 16 --image-size 256 --context-slices 2 --clicks --workers 2
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "${GPUS:-0}" -ge 2 ]; then
  step ddp-2-gpus $PY -m torch.distributed.run --standalone --nproc_per_node 2 -m napari_lgg_unet.cli train \
    --data "$OUT/sample" --out "$OUT/ddp" --device cuda --epochs 1 --steps-per-epoch 5 --batch-size 8 --image-size 128
else
  rows+=("$(printf '%-22s %-5s' ddp-2-gpus skip) (${GPUS:-0} GPU)")
fi
echo "GPU check on: $(cat "$OUT/gpu.txt" | tail -n 1); logs in $OUT"
printf '%s\n' "${rows[@]}"
! printf '%s\n' "${rows[@]}" | grep -q ' FAIL '
