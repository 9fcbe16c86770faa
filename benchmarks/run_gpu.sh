#!/usr/bin/env bash
# Run the GPU benchmarks and write their JSON/logs into OUTDIR (default: bench_out).
#   bash benchmarks/run_gpu.sh OUTDIR [bench|train|fidelity|ddp|evaluate]
# Datasets and runs go under $WORK (default /tmp).
set -uo pipefail
out=${1:-bench_out}
what=${2:-bench}
mkdir -p "$out"
work=${WORK:-/tmp}
mkdir -p "$work"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cs() { python3 -m causalscene.cli "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$out/gpu.txt"
python3 -c "import torch, pyro; print('torch', torch.__version__, 'pyro', pyro.__version__)" | tee -a "$out/gpu.txt"
train_benches() {
  cs procgen rpg --n 50000 --size 64 --seed 0 --out $work/rpg64 --no-progress --overwrite
  b="python3 benchmarks/bench_train.py --device cuda --steps 200 --warmup 20 --cuda-graph"
  $b --batch-size 1024 --out "$out/train_fp32.json" 2>&1 | tee "$out/train.log"
  $b --batch-size 1024 --bf16 --channels-last --out "$out/train_bf16.json" 2>&1 | tee -a "$out/train.log"
  $b --batch-size 256 --out "$out/train_b256.json" 2>&1 | tee -a "$out/train.log"
  $b --batch-size 1024 --data $work/rpg64 --out "$out/train_real.json" 2>&1 | tee -a "$out/train.log"
  $b --batch-size 1024 --data $work/rpg64 --bf16 --channels-last --out "$out/train_real_bf16.json" 2>&1 | tee -a "$out/train.log"
  for f in 1.0 0.25 0.125; do  # with training's consistency term on a share f of each batch
    $b --batch-size 1024 --data $work/rpg64 --bf16 --channels-last --consistency-weight 0.25 \
      --consistency-fraction $f --out "$out/train_real_bf16_term$f.json" 2>&1 | tee -a "$out/train.log"
  done
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
  # the default GPU training budget: 50k images, 100 epochs at batch 512, lr 1e-3, captured bf16
  # steps, the label-consistency term at its default weight on a quarter of each batch (1.0 costs
  # 1.36x the step time for the same fidelity here). (lr 2e-3 collapsed faces at epoch 20-30:
  # held-out ELBO 22k -> 2.7k)
  scenes=${SCENES:-faces rpg}
  for scene in $scenes; do
    dag=dags/$([ $scene = rpg ] && echo rpg_fight || echo faces).yaml
    cs procgen $scene --n 50000 --size 64 --seed 0 --out $work/$scene --no-progress --overwrite
    rm -rf $work/run_$scene; t0=$SECONDS
    cs train --dag $dag --data $work/$scene --out $work/run_$scene --epochs ${EPOCHS:-100} --batch-size 512 --lr 1e-3 --base-channels 32 --latent-dim 16 --device cuda --collapse-labels --cuda-graph --bf16 --channels-last --no-progress --seed 0 --consistency-fraction ${FRACTION:-0.25} ${TRAIN_FLAGS:-} 2>&1 | tail -3 | tee -a "$out/fidelity.log"
    echo "$scene train_seconds $((SECONDS - t0))" | tee -a "$out/fidelity.log"; t0=$SECONDS
    cs evaluate $work/run_$scene --device cuda --probe-epochs 10 --probe-images 20000 --n-per-state 200 --n-counterfactual 200 --seed 0 2>&1 | tail -30 | tee -a "$out/fidelity.log"
    echo "$scene evaluate_seconds $((SECONDS - t0))" | tee -a "$out/fidelity.log"
    cp $work/run_$scene/eval.json "$out/eval_$scene.json"; cp $work/run_$scene/metrics.jsonl "$out/metrics_$scene.jsonl"
    cp $work/run_$scene/samples_e*$(printf %03d ${EPOCHS:-100}).png "$out/samples_$scene.png" 2>/dev/null
  done
  ;;
evaluate)
  # evaluate's old settings (twins rebuilt, every probe epoch) against the new, at the fidelity
  # mode's sizes, on RUN=$work/run_$scene when present (else a short 2-epoch run is trained)
  for scene in ${SCENES:-faces rpg}; do
    dag=dags/$([ $scene = rpg ] && echo rpg_fight || echo faces).yaml
    if [ ! -f $work/run_$scene/config.json ]; then
      cs procgen $scene --n 50000 --size 64 --seed 0 --out $work/$scene --no-progress --overwrite
      cs train --dag $dag --data $work/$scene --out $work/run_$scene --epochs 2 --batch-size 512 --lr 1e-3 --base-channels 32 --latent-dim 16 --device cuda --collapse-labels --bf16 --channels-last --no-progress --seed 0
    fi
    python3 benchmarks/bench_evaluate.py --run $work/run_$scene --device cuda --probe-epochs 10 --probe-images 20000 --n-per-state 200 --n-counterfactual 200 --json --out "$out/evaluate_$scene.json" 2>&1 | tee -a "$out/evaluate.log"
  done
  ;;
ddp)
  python3 benchmarks/bench_train.py --device cuda --batch-size 1024 --steps 200 --warmup 20 --out "$out/ddp1.json" 2>&1 | tee "$out/ddp.log"
  torchrun --nproc_per_node 2 benchmarks/bench_train.py --device cuda --batch-size 1024 --steps 200 --warmup 20 --ddp --out "$out/ddp2.json" 2>&1 | tee -a "$out/ddp.log"
  ;;
esac
