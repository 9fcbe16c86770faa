#!/usr/bin/env bash
# Run the GPU benchmarks and write their JSON/logs into OUTDIR (default: bench_out).
#   bash benchmarks/run_gpu.sh OUTDIR [bench|train|fidelity|ddp]
set -uo pipefail
out=${1:-bench_out}
what=${2:-bench}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cs() { python3 -m causalscene.cli "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$out/gpu.txt"
python3 -c "import torch, pyro; print('torch', torch.__version__, 'pyro', pyro.__version__)" | tee -a "$out/gpu.txt"
train_benches() {
  cs procgen rpg --n 50000 --size 64 --seed 0 --out /tmp/rpg64 --no-progress --overwrite
  b="python3 benchmarks/bench_train.py --device cuda --steps 200 --warmup 20 --cuda-graph"
  $b --batch-size 1024 --out "$out/train_fp32.json" 2>&1 | tee "$out/train.log"
  $b --batch-size 1024 --bf16 --channels-last --out "$out/train_bf16.json" 2>&1 | tee -a "$out/train.log"
  $b --batch-size 256 --out "$out/train_b256.json" 2>&1 | tee -a "$out/train.log"
  $b --batch-size 1024 --data /tmp/rpg64 --out "$out/train_real.json" 2>&1 | tee -a "$out/train.log"
  $b --batch-size 1024 --data /tmp/rpg64 --bf16 --channels-last --out "$out/train_real_bf16.json" 2>&1 | tee -a "$out/train.log"
}
case "$what" in
train)
  train_benches
  ;;
bench)
  train_benches
  python3 benchmarks/bench_cage.py --device cuda --baseline-permutations 20 --json 2>&1 | tee "$out/cage.log"
  python3 benchmarks/bench_modules.py --device cuda --json 2>&1 | tee "$out/modules.log"
  ;;
fidelity)
  for scene in faces rpg; do
    dag=dags/$([ $scene = rpg ] && echo rpg_fight || echo faces).yaml
    cs procgen $scene --n 20000 --size 64 --seed 0 --out /tmp/$scene --no-progress --overwrite
    cs train --dag $dag --data /tmp/$scene --out /tmp/run_$scene --epochs 40 --batch-size 256 --base-channels 32 --latent-dim 16 --device cuda --collapse-labels --no-progress --seed 0 2>&1 | tail -3 | tee -a "$out/fidelity.log"
    cs evaluate /tmp/run_$scene --device cuda --probe-epochs 20 --probe-images 20000 --seed 0 2>&1 | tail -30 | tee -a "$out/fidelity.log"
    cp /tmp/run_$scene/eval.json "$out/eval_$scene.json"; cp /tmp/run_$scene/metrics.jsonl "$out/metrics_$scene.jsonl"
  done
  ;;
ddp)
  python3 benchmarks/bench_train.py --device cuda --batch-size 1024 --steps 200 --warmup 20 --out "$out/ddp1.json" 2>&1 | tee "$out/ddp.log"
  torchrun --nproc_per_node 2 benchmarks/bench_train.py --device cuda --batch-size 1024 --steps 200 --warmup 20 --ddp --out "$out/ddp2.json" 2>&1 | tee -a "$out/ddp.log"
  ;;
esac
