#!/bin/bash
# Device check: the official trainer unmodified on CUDA (and ours, if it runs), 10 epochs, same settings.
cd "$(dirname "$0")/.." || exit 1
D=benchmarks/runs/device  # filled by benchmarks/prepare_device.sh
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $D/whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/sdk . >/tmp/sdk_install.log 2>&1 \
  || { echo "yolox_sdk install failed"; tail -5 /tmp/sdk_install.log; }
export PYTHONPATH=/tmp/site:/tmp/sdk YOLOX_SDK_ASSETS=$PWD/$D/assets YOLOX_SDK_HOME=/tmp/sdkhome PYTHONUNBUFFERED=1
nvidia-smi -L; python3 -c "import torch, yolox, yolox_sdk; print(torch.__version__, torch.cuda.get_device_name())"
for W in ${WORKERS:-0 4}; do
  timeout ${RUN_TIMEOUT:-240} python3 benchmarks/compare_official.py --device cuda --epochs ${EPOCHS:-10} --workers $W \
    --data $D/assets/datasets/bccd/BCCD --weights $D/assets/weights/yolox_nano_coco_from_onnx.pth \
    --out-dir /tmp/run_w$W $EXTRA > /tmp/log_w$W.txt 2>&1
  echo "workers $W rc=$?"
  grep -v "FutureWarning\|autocast\|GradScaler" /tmp/log_w$W.txt | tail -${TAIL:-25}
  cp /tmp/log_w$W.txt $OUT/ 2>/dev/null; cp /tmp/run_w$W/results.json $OUT/results_w$W.json 2>/dev/null
done
cp /tmp/run_w0/official/official_final_ema.pth $OUT/official_final_ema_gpu.pth 2>/dev/null
true
