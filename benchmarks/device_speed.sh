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
# ONNX Runtime on the GPU: the float32 graph `btk export` writes (the fast recipe's network), carried
# as .device/model.onnx, timed alone on batches of 32 and 128 with the CUDA execution provider
# against the CPU one. Needs onnxruntime-gpu on the machine (its wheel is far over a call's 64 MiB,
# so it cannot be carried): where it is missing this says so and the CPU figures in
# docs/performance.md stand.
if [ -f .device/model.onnx ]; then
  timeout 120 python3 - .device/model.onnx <<'PY' 2>&1 | tee "$OUT/onnx_cuda.log"
import sys, time
import numpy as np
try:
    import onnxruntime as ort
except ImportError:
    sys.exit("onnxruntime is not installed here: no ONNX Runtime figures on this machine")
available = ort.get_available_providers()
print("onnxruntime", ort.__version__, "providers:", ", ".join(available))
for provider in [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]:
    session = ort.InferenceSession(sys.argv[1], providers=[provider])
    shape = session.get_inputs()[0].shape
    for batch in (32, 128):
        x = np.random.default_rng(0).random((batch, *shape[1:]), dtype=np.float32)
        session.run(["probabilities"], {"image": x})
        t0 = time.perf_counter()
        for _ in range(20):
            session.run(["probabilities"], {"image": x})
        print(f"{provider}: batch {batch}: {20 * batch / (time.perf_counter() - t0):,.0f} images/s")
PY
fi
