#!/bin/bash
# Prepare benchmarks/runs/device/ (git-ignored) for a GPU machine that has torch but no network:
# the few wheels its image lacks, and a copy of the assets the benchmark reads. Then, on the GPU machine,
# from the repository root: WORKERS=4 bash benchmarks/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
D=benchmarks/runs/device
mkdir -p "$D/whl" "$D/assets"
.venv/bin/python -m pip download --quiet --no-deps --only-binary :all: --python-version 3.12 -d "$D/whl" \
  cattrs loguru pixeltable-yolox pycocotools thop
ASSETS=${YOLOX_SDK_ASSETS:-../shared/assets}
mkdir -p "$D/assets/datasets" "$D/assets/weights"
cp "$ASSETS/catalog.json" "$D/assets/"
cp -r "$ASSETS/datasets/bccd" "$D/assets/datasets/"
cp "$ASSETS/weights/yolox_nano_coco_from_onnx.pth" "$D/assets/weights/"
echo "ready: $(du -sh $D | cut -f1) in $D"
