#!/usr/bin/env bash
# btk's seed-cnn against the plain-Keras baseline on a GPU machine without TensorFlow
# (KERAS_BACKEND=jax), in one call: trained images/s, time to a validation accuracy, peak
# memory and their ratios (benchmarks/train_vs_baseline.py), then btk's fast recipe.
#
# Expects, in the working tree (ignored by git, carried with the call):
#   .whl/               wheels of keras, namex and optree for the machine's Python
#   .device/sartaj256/  the dataset in its Kaggle layout as 256 px grayscale JPEGs
#   .device/seed_pipeline.py  the plain-Keras baseline
# Writes logs and results under $OUT (default ./out).
#   QUICK="--limit 64 --epochs 1" KERAS_BACKEND=tensorflow SKIP_WHEELS=1 bash benchmarks/device_speed.sh
# tries it on a CPU.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
DATA=${DATA:-.device/sartaj256}
EPOCHS=${EPOCHS:-5}
QUICK=${QUICK:-}
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD:$PWD/plugins KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 COLUMNS=170
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc) > "$OUT/machine.txt"
python3 -c "import keras, platform; print('keras', keras.__version__, keras.backend.backend(), platform.python_version())" \
  | tee -a "$OUT/machine.txt"
timeout "${SECONDS_LIMIT:-480}" python3 benchmarks/train_vs_baseline.py --data "$DATA" --epochs "$EPOCHS" --fast \
  --baseline .device/seed_pipeline.py --out "$OUT/train_vs_baseline" $QUICK 2>&1 | tee "$OUT/train_vs_baseline.log"
