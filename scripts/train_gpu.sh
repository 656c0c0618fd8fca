#!/usr/bin/env bash
# Train the bundled models that miss a target (photo and fluorescence denoising, deblurring) on a
# lent GPU machine in one call (docs/models.md, "Training on a GPU"). Deraining meets its targets
# with its v0.1 recipe (no warm start): add it to MODELS only with a v0.2 config.
#
# Here, first (the pack travels with the working tree; the tree itself is ~29 MiB of the 64):
#   python scripts/pack_training_cache.py --cache runs/cache --out gpu_pack/cache --max-mib 28
# Then, on the device (run tool; carry ["gpu_pack"]), one call of about 7.5 minutes:
#   bash scripts/train_gpu.sh
# Each model warm-starts from its committed weights and trains one warm-up + cosine cycle fitted
# to MINUTES of training (train_bundled.py --budget-minutes) with the config's recipe, a batch of
# BATCH patches drawn by WORKERS processes. Back in $OUT (at most 8 files): the exported
# .safetensors (metadata: recipe, validation PSNR), summary.json (per model: steps, PSNR before
# and after, levels) and train.log. Nothing is committed from there without the CPU benchmark
# (benchmarks/quality.py --model ...) that the other phases went through.
#
# Smoke test without a GPU: DEVICE=cpu MINUTES=0.2 BATCH=2 WORKERS=1 OUT=/tmp/gpu_out bash scripts/train_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results (the device tool sets it)}"
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-2}
BATCH=${BATCH:-16}
WORKERS=${WORKERS:-12}
CACHE=${CACHE:-gpu_pack/cache}
MODELS=${MODELS:-"hinet-denoise-photo hinet-denoise-fluo hinet-deblur-photo"}
PYTHON=${PYTHON:-python3}
RUNS=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
[ -d "$CACHE" ] || { echo "no packed cache at $CACHE: run scripts/pack_training_cache.py here first" >&2; exit 2; }
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'device', '$DEVICE',
      torch.cuda.get_device_name(0) if '$DEVICE'.startswith('cuda') else 'cpu')"
status=0
for name in $MODELS; do
  # --max-minutes: a hard stop (checkpointed, exported) in case the fitted budget runs over
  "$PYTHON" scripts/train_bundled.py "$name" --cache "$CACHE" --runs "$RUNS" --device "$DEVICE" \
    --batch-size "$BATCH" --data-workers "$WORKERS" --budget-minutes "$MINUTES" \
    --max-minutes "$("$PYTHON" -c "print($MINUTES * 1.3 + 0.5)")" \
    --export --weights-dir "$OUT" 2>&1 | tee -a "$OUT/train.log" || status=1
done
"$PYTHON" - "$RUNS" "$OUT/summary.json" $MODELS <<'EOF'
import json, sys
from pathlib import Path
runs, out, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
summary = {}
for name in names:
    d = runs / name
    summary[name] = {f.stem: json.loads(f.read_text()) for f in (d / "summary.json", d / "levels.json") if f.exists()}
out.write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=1))
EOF
exit $status
