#!/usr/bin/env bash
# Train the model on a lent GPU machine (issue 16, item 4). Its working tree travels in calls of at most 64 MiB, of
# which the project takes about 29 MB, so the slices go in parts (scripts/gpu_data.py): one call per part, back to
# back (a machine stays warm only 30 s after a call, and what it unpacked is kept while it is warm), and the call
# that carries the last part trains. A returned file may have 16 MiB, so the model comes back stored in half
# precision (as the shipped default is) and cut into pieces.
#
# Here, once (the machine has PyTorch, tifffile, timm and Pillow, not segmentation-models-pytorch or nibabel):
#   python scripts/gpu_data.py pack ../shared/data/lgg/kaggle_3m .gpu-pack --part-mib 30
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl segmentation-models-pytorch nibabel
# There, each call carrying .gpu-pack/manifest.json, .gpu-pack/part-K and .whl:
#   bash scripts/gpu_train.sh                                        # a part only: unpack it
#   BUDGET_S=420 bash scripts/gpu_train.sh --epochs 60 ...           # the last part: unpack, train for BUDGET_S
# The training options are `lgg-unet train`'s, without --data and --out; Ctrl-C after BUDGET_S seconds ends the run
# as a user's Ctrl-C does (the best or, with --keep-last, the last finished epoch is kept). Back here, with the
# call's files under FILES:   cat FILES/model.safetensors.part-* > runs/NAME/model.safetensors; cp FILES/*.json
# FILES/*.csv FILES/*.log runs/NAME/
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
$PY scripts/gpu_data.py unpack .gpu-pack .gpu-data/kaggle_3m
unpacked=$?
[ $# -eq 0 ] && exit $((unpacked == 3 ? 0 : unpacked))  # a part arrived; more to come
[ $unpacked -eq 0 ] || { echo "not training: some patients have not arrived (above)"; exit 1; }
$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU')"
timeout -s INT -k 60 "${BUDGET_S:-420}" $PY -m napari_lgg_unet.cli train --data .gpu-data/kaggle_3m --out .gpu-run \
  "$@" 2>&1 | tee "$OUT/train.log"
trained=${PIPESTATUS[0]}
$PY - "$OUT" <<'PY' || exit 1
import sys
from pathlib import Path
from napari_lgg_unet.engine.model import load_model, save_model
model = load_model(".gpu-run")
save_model(model.network, model.config, Path(sys.argv[1]) / "model", half=True)
PY
split -b 15M -d "$OUT/model/model.safetensors" "$OUT/model.safetensors.part-" && rm "$OUT/model/model.safetensors"
mv "$OUT/model/config.json" "$OUT/config.json" && rmdir "$OUT/model"
cp .gpu-run/*.csv "$OUT/" 2>/dev/null
ls -l "$OUT"
exit "$trained"
