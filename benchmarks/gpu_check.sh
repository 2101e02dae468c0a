#!/usr/bin/env bash
# GPU check (issue #7): both twins train mnist-cnn on the GPU, in fp32 and in bf16, to the 99% target;
# prints time-to-accuracy (wall seconds until the first epoch at >= 99% test accuracy) and steady
# training throughput from each run.json.
#
#   benchmarks/gpu_check.sh            # needs an NVIDIA GPU, torch with CUDA and jax[cuda12]
#   PYTHON=.venv/bin/python OUT=runs/gpu-check EPOCHS=3 benchmarks/gpu_check.sh
#
# The JAX twin needs a CUDA build of jaxlib: pip install -U "jax[cuda12]" (the default extra is CPU-only).
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-runs/gpu-check}
EPOCHS=${EPOCHS:-3}

nvidia-smi -L || { echo "gpu_check: no NVIDIA GPU visible (nvidia-smi failed)" >&2; exit 2; }
for fw in torch jax; do
  for prec in fp32 bf16; do
    echo "== $fw $prec"
    "$PY" -m diptych train mnist-cnn --framework "$fw" --device gpu --precision "$prec" --epochs "$EPOCHS" \
      --out "$OUT/$fw-$prec" --no-progress
  done
done

"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path

print(f"\n| twin | precision | device | final acc | time to 99% (s) | samples/s | compile (s) |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
for run_json in sorted(Path(sys.argv[1]).glob("*/run.json")):
    r = json.loads(run_json.read_text())
    hit = next((e["wall_seconds"] for e in r["epochs"] if e["test_accuracy"] >= 0.99), None)
    print(f"| {r['framework']} | {r['config']['precision']} | {r['hardware']['device']} | "
          f"{100 * r['test_accuracy']:.2f}% | {hit if hit is not None else 'not reached'} | "
          f"{r['samples_per_second']:,.0f} | {r['compile_seconds']:.1f} |")
PYEOF
