#!/usr/bin/env bash
# The report suite on a GPU machine without TensorFlow (KERAS_BACKEND=jax), in one call.
#
# Expects, in the working tree (ignored by git, carried with the call):
#   .whl/               wheels of keras, namex and optree for the machine's Python
#   .device/sartaj256/  the dataset in its Kaggle layout as 256 px grayscale JPEGs
#   .device/seed_pipeline.py  the plain-Keras baseline, for a speed comparison in the same run
# Writes under $OUT (default ./out): the suite's run directories without model files, logs,
# and the machine's description.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
DATA=${DATA:-.device/sartaj256}
QUICK=${QUICK:-}   # e.g. "--epochs 1 --limit-train 40 --limit-test 20" to try the script on a CPU
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD:$PWD/plugins KERAS_BACKEND=jax PYTHONUNBUFFERED=1 COLUMNS=170
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/machine.txt" 2>&1
nproc >> "$OUT/machine.txt"
python3 -c "import jax, keras, platform; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, platform.python_version())" | tee -a "$OUT/machine.txt"
RUNS=/tmp/runs; rm -rf $RUNS
# 1. the report's four experiments, the default recipe (60 epochs each)
timeout "${SUITE_SECONDS:-420}" python3 -m btk plan --data $DATA --suite report --out $RUNS/suite $QUICK 2>&1 | tee "$OUT/suite.log"
echo "suite finished at $(elapsed) s"
# 2. the report's exact recipe (raw pixels), 4 classes, shortened: it collapses from epoch 2 on
if [ "$(elapsed)" -lt "${PRESET_START_BY:-470}" ]; then
  timeout 80 python3 -m btk run --data $DATA --preset report --epochs 12 --name report-preset --out $RUNS/preset $QUICK 2>&1 | tee "$OUT/preset.log"
fi
# 3. the plain-Keras baseline on the same GPU, same data, for images/s (scaled pixels, 4 classes)
if [ "$(elapsed)" -lt "${BASELINE_START_BY:-500}" ]; then
  mkdir -p /tmp/baseline
  OUT=/tmp/baseline EPOCHS=15 SCALE=0.00392156862745098 EXPERIMENTS=multiclass timeout 75 python3 .device/seed_pipeline.py $DATA 2>&1 | tail -5 | tee "$OUT/baseline.log"
  cp /tmp/baseline/*.json "$OUT/" 2>/dev/null
fi
# everything but the model files comes back
(cd /tmp && find runs -type f ! -name '*.keras' | tar -cf - -T - | tar -xf - -C "$OUT")
echo "total $(elapsed) s"
