#!/usr/bin/env bash
# btk's data-parallel path on a GPU machine without TensorFlow (KERAS_BACKEND=jax), in one call:
# a short run trained with --devices auto, then benchmarks/scoring_devices.py on it (Keras'
# default device against --devices auto), and the two-process loopback (multi-host) on the CPU.
# On a machine with several GPUs the --devices auto lines are the data-parallel speed; with one,
# they check that the path works on a real device.
#
# Expects, in the working tree (ignored by git, carried with the call):
#   .whl/               wheels of keras, namex and optree for the machine's Python
#   .device/sartaj256/  the dataset in its Kaggle layout as 256 px grayscale JPEGs
# Writes logs and results under $OUT (default ./out).
#   QUICK="-R per_class=10 --image-size 32" KERAS_BACKEND=jax SKIP_WHEELS=1 DATA=... bash benchmarks/device_scaleout.sh
# tries it on a CPU.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
DATA=${DATA:-.device/sartaj256}
EPOCHS=${EPOCHS:-3}
QUICK=${QUICK:-}
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD:$PWD/plugins KERAS_BACKEND=jax PYTHONUNBUFFERED=1 COLUMNS=170
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc) > "$OUT/machine.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" | tee -a "$OUT/machine.txt"
RUNS=/tmp/scaleout-runs; rm -rf $RUNS
# 1. a short run of the default recipe on every device the backend sees
timeout "${TRAIN_SECONDS:-240}" python3 -m btk run --data "$DATA" --epochs "$EPOCHS" --devices auto --name devices-auto \
  --out $RUNS --json $QUICK > "$OUT/train_devices_auto.log" 2>&1
echo "train exit $?"; grep -E "data-parallel|epoch " "$OUT/train_devices_auto.log" | tail -5
RUN=$(ls -d $RUNS/*-devices-auto 2>/dev/null | head -1)
# 2. scoring the Testing split on Keras' default device and over every device
if [ -n "$RUN" ]; then
  cp "$RUN/config.json" "$OUT/run_config.json"
  timeout "${SCORE_SECONDS:-150}" python3 benchmarks/scoring_devices.py "$RUN" --data "$DATA" --split Testing \
    --devices default,auto --out /tmp/scaleout-scoring 2>&1 | tee "$OUT/scoring_devices.log"
fi
# 3. two jax.distributed processes on 127.0.0.1 (CPU devices) against one process
timeout "${LOOPBACK_SECONDS:-150}" env JAX_PLATFORMS=cpu python3 benchmarks/multihost_loopback.py --epochs 1 2>&1 \
  | tail -1 | tee "$OUT/multihost_loopback.json"
