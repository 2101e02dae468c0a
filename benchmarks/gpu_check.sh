#!/usr/bin/env bash
# GPU check: the decomposed mnist-cnn benchmark on the GPU, in fp32 and bf16, then the character GPT.
#
# One interleaved `diptych bench mnist-cnn --baseline --device gpu --precision fp32,bf16` run: the seed
# baseline (plain PyTorch, the recipe as written), each twin with the seed's recipe, each twin with
# diptych's recipe in fp32 and in bf16; time to 99% on the training clock (evaluation every --eval-every
# steps, excluded). Prints the decomposition (framework x recipe = total), the table, and time to 99%
# per contestant. Then `diptych bench chars-gpt --device gpu --precision fp32,bf16 --no-train`: train and
# decode tokens/s and MFU per twin and precision, attention through the fused kernels (torch SDPA's flash or
# cuDNN backend; JAX's cuDNN attention where it compiles, else XLA's), printed from its report.md.
#
#   pip install -e '.[gpu]'            # torch with CUDA (the default Linux wheel) and the JAX CUDA 12 plugin
#   benchmarks/gpu_check.sh            # needs an NVIDIA GPU
#   PYTHON=.venv/bin/python OUT=runs/gpu-check DATA=../shared/data/mnist REPEATS=3 benchmarks/gpu_check.sh
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-runs/gpu-check}
REPEATS=${REPEATS:-3}
DATA_ARGS=()
if [ -n "${DATA:-}" ]; then DATA_ARGS=(--data-dir "$DATA"); fi

nvidia-smi -L || { echo "gpu_check: no NVIDIA GPU visible (nvidia-smi failed)" >&2; exit 2; }
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA device (a +cpu wheel?)')"
"$PY" -c "import jax, sys; sys.exit(0 if jax.devices()[0].platform == 'gpu' else 'gpu_check: jax sees no GPU: pip install -e .[gpu]')"

"$PY" -m diptych bench mnist-cnn --baseline --device gpu --precision fp32,bf16 --repeats "$REPEATS" \
  "${DATA_ARGS[@]}" --out "$OUT"

"$PY" - "$OUT/bench.json" <<'PYEOF'
import json, sys

r = json.load(open(sys.argv[1]))
print(f"\n| contestant | precision | time to 99% (s, training clock) | epochs | final acc | samples/s |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for name, row in r["contestants"].items():
    spec = r.get("specs", {}).get(name, {})
    ttt = row.get("time_to_target_seconds")
    print(f"| {name} | {spec.get('precision', 'fp32')} | {'not reached' if ttt is None else f'{ttt:.1f}'} | "
          f"{row.get('time_to_target_epochs')} | {row.get('final_accuracy', float('nan')):.2%} | "
          f"{row['train_sps_median']:,.0f} |")
for twin, d in r.get("decomposition", {}).items():
    print(f"{twin}: total {d['total']:.2f}x = framework {d['framework']:.2f}x x recipe {d['recipe']:.2f}x")
PYEOF

"$PY" -m diptych bench chars-gpt --device gpu --precision fp32,bf16 --no-train --repeats "$REPEATS" \
  --out "$OUT/chars-gpt"
sed -n '1,/^## /p' "$OUT/chars-gpt/report.md"
