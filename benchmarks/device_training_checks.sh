#!/bin/bash
# GPU checks of issue #5 in one go (prepare with benchmarks/prepare_device.sh first):
# 1. training_speed.py on CUDA: fp32 vs channels_last / amp / compile / checkpointing, ratios in one run;
# 2. CUDA + AMP + DDP: 2 torchrun processes sharing the one GPU (gloo, since NCCL refuses two ranks per
#    GPU) with sync_bn, against 1 process with the same global batch.
cd "$(dirname "$0")/.." || exit 1
D=benchmarks/runs/device
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $D/whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/sdk . >/tmp/sdk_install.log 2>&1 \
  || { echo "yolox_sdk install failed"; tail -5 /tmp/sdk_install.log; }
export PYTHONPATH=/tmp/site:/tmp/sdk YOLOX_SDK_ASSETS=$PWD/$D/assets YOLOX_SDK_HOME=/tmp/sdkhome PYTHONUNBUFFERED=1
nvidia-smi -L; python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
for M in yolox-nano yolox-s; do
  V="fp32 channels_last amp checkpointing compile"; [ $M = yolox-s ] && V="fp32 channels_last amp checkpointing"
  timeout ${SPEED_TIMEOUT:-150} python3 benchmarks/training_speed.py --device cuda --models $M --variants $V \
    --input-size 416 --batch-size 16 --steps ${STEPS:-20} --json $OUT/speed_cuda_$M.json 2>&1 | grep -v "Warning\|autocast" | tail -12
done
COMMON="model.name=yolox-nano model.input_size=[320,320] data.train_path=bccd data.train_split=train data.val_path=bccd
  data.val_split=val data.batch_size=16 augmentation.mixup=false training.epochs=${EPOCHS:-3} training.no_aug_epochs=1
  training.warmup_epochs=1 training.amp=true evaluation.eval_interval=1 monitoring.progress_bar=false
  monitoring.tensorboard=false monitoring.output_dir=/tmp/runs"
echo "{}" > /tmp/empty.yaml
for N in 2 1; do
  start=$(date +%s)
  if [ $N = 2 ]; then
    YOLOX_SDK_DIST_BACKEND=gloo timeout ${DDP_TIMEOUT:-150} python3 -m torch.distributed.run --standalone --nproc_per_node 2 -m yolox_sdk train /tmp/empty.yaml \
      $COMMON device.gpu_ids=[0,0] training.sync_bn=true monitoring.run_name=ddp > /tmp/train_$N.log 2>&1
  else
    timeout ${DDP_TIMEOUT:-150} python3 -m yolox_sdk train /tmp/empty.yaml $COMMON monitoring.run_name=single > /tmp/train_$N.log 2>&1
  fi
  echo "processes=$N rc=$? wall=$(( $(date +%s) - start ))s"
  grep -v "Warning\|autocast\|^\s*$" /tmp/train_$N.log | grep -i "process\|precision\|sync\|epoch\|trained\|error" | tail -12
  cp /tmp/train_$N.log $OUT/ 2>/dev/null
done
cp /tmp/runs/*/metrics.csv $OUT/ 2>/dev/null; for r in /tmp/runs/*; do cp $r/metrics.csv $OUT/metrics_$(basename $r).csv; done
true
