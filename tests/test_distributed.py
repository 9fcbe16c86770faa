"""Several processes without DDP's reducer — what a captured step uses under torchrun: the
gradients' all-reduce (:class:`GradientAllReduce`) against DistributedDataParallel on the same
batches (2 gloo processes), the step a CUDA graph captures run eagerly with it, the rank check
at the end of a run, and :func:`check_cuda_graph`'s rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from causalscene.train.graph import check_cuda_graph

ROOT = Path(__file__).resolve().parent.parent

# Each rank trains on its own batch; every route starts from a rank-specific initialisation, so
# agreement needs rank 0's weights broadcast, and the same random draws (seeded per step).
_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, torch
    sys.path.insert(0, {root!r})
    from tests.test_model import synth_data
    from causalscene.dag import CausalDAG
    from causalscene.model import CausalVAE
    from causalscene.train import TrainConfig
    from causalscene.train.data import prepare_data
    from causalscene.train.distributed import (GradientAllReduce, broadcast_from_rank0,
        check_ranks_agree, join_process_group, wrap_ddp)
    from causalscene.train.graph import make_step
    from causalscene.train.guards import GradientSpikeGuard
    from causalscene.train.objective import _Objective
    from causalscene.train.steps import SVIStep

    torch.set_num_threads(1)
    device, world, rank = join_process_group(torch.device("cpu"))
    dag = CausalDAG.load({dag!r})
    cfg = TrainConfig(batch_size=8, latent_dim=3, base_channels=4, device="cpu", seed=0)
    B = cfg.batch_size

    def new_model():
        torch.manual_seed(100 + rank)
        return CausalVAE(dag, 16, 3, base_channels=4)

    data = prepare_data(new_model(), synth_data(dag, 64, 16, seed=0), cfg, device)
    batches = [torch.arange(B) + B * (2 * step + rank) for step in range(3)]

    def gradients(loss_fn, model, idx, reduce=None):
        torch.manual_seed(7)
        labels = {{k: v[idx] for k, v in data.train_labels.items()}}
        loss, _ = loss_fn(data.train_images[idx], labels, None)
        loss.backward()
        local = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        if reduce is not None:
            reduce()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()]), local

    ddp_model, own_model = new_model(), new_model()
    ddp_grad, _ = gradients(wrap_ddp(_Objective(ddp_model, cfg, frozenset()), device, world),
                            ddp_model, batches[0])
    broadcast_from_rank0(own_model)
    own_grad, local_grad = gradients(_Objective(own_model, cfg, frozenset()), own_model,
                                     batches[0], GradientAllReduce(own_model.parameters(), world))

    def train(step_of, model):
        for i, idx in enumerate(batches):
            torch.manual_seed(1000 + i)
            step_of(idx)
        return torch.cat([t.reshape(-1) for t in model.state_dict().values()])

    ddp_model, manual_model, graph_model = new_model(), new_model(), new_model()
    ddp_params = train(SVIStep(ddp_model, cfg, data, device, world), ddp_model)
    manual_params = train(SVIStep(manual_model, cfg, data, device, world, manual_allreduce=True),
                          manual_model)
    # the closure GraphedStep captures, run eagerly, with the all-reduce hook
    broadcast_from_rank0(graph_model)
    optimizer = torch.optim.Adam(graph_model.parameters(), lr=cfg.lr,
                                 betas=(cfg.beta1, cfg.beta2))
    guard = GradientSpikeGuard(graph_model.parameters(), cfg.spike_factor, device)
    index = torch.zeros(B, dtype=torch.long)
    step = make_step(_Objective(graph_model, cfg, frozenset()), optimizer, data.train_images,
                     data.train_labels, None, index,
                     GradientAllReduce(graph_model.parameters(), world), guard)

    def graph_step(idx):
        index.copy_(idx)
        optimizer.zero_grad(set_to_none=True)
        step()

    graph_params = train(graph_step, graph_model)
    start = torch.cat([t.reshape(-1) for t in new_model().state_dict().values()])
    for model in (ddp_model, manual_model, graph_model):
        check_ranks_agree(model)
    if rank == 1:
        with torch.no_grad():
            next(graph_model.parameters()).view(-1)[0] += 1.0
    try:
        check_ranks_agree(graph_model)
        diverged = ""
    except RuntimeError as exc:
        diverged = str(exc)

    def gap(a, b):
        return float((a - b).abs().max() / b.abs().max())

    result = dict(
        grad_vs_ddp=gap(own_grad, ddp_grad),
        local_vs_ddp=gap(local_grad, ddp_grad),
        manual_vs_ddp=gap(manual_params, ddp_params),
        graph_step_vs_ddp=gap(graph_params, ddp_params),
        moved=gap(start, ddp_params),
        diverged=diverged,
    )
    with open(os.path.join(sys.argv[1], "rank%d.json" % rank), "w") as f:
        json.dump(result, f)
    torch.distributed.destroy_process_group()  # no gloo thread left running at exit
    """
)


@pytest.mark.slow
def test_gradient_allreduce_matches_ddp_on_two_gloo_processes(tmp_path):
    script = tmp_path / "allreduce.py"
    script.write_text(_SCRIPT.format(root=str(ROOT), dag=str(ROOT / "dags" / "rpg_fight.yaml")))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*cmd, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # the averaged gradients are DDP's; a rank's own gradients are not (different batches)
        assert r["grad_vs_ddp"] <= 1e-6, r
        assert r["local_vs_ddp"] > 1e-3, r
        # three full steps (loss, backward, all-reduce, spike guard, Adam) land on DDP's weights,
        # which moved from where this rank started
        assert r["manual_vs_ddp"] <= 1e-6, r
        assert r["graph_step_vs_ddp"] <= 1e-6, r
        assert r["moved"] > 1e-3, r
        assert r["diverged"].startswith("the ranks' weights diverged: 1 of "), r


def test_check_cuda_graph_allows_processes_with_a_full_batch_each():
    cuda = torch.device("cuda", 0)  # a device object only: nothing runs on it
    check_cuda_graph(cuda, 2, frozenset(), 64, 32)
    with pytest.raises(ValueError, match=r"63 training images \(2 processes: 31 each\) < batch"):
        check_cuda_graph(cuda, 2, frozenset(), 63, 32)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        check_cuda_graph(torch.device("cpu"), 1, frozenset(), 64, 32)
    with pytest.raises(ValueError, match="complete labels"):
        check_cuda_graph(cuda, 2, frozenset({"weapon"}), 64, 32)


_CUDA_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, torch
    sys.path.insert(0, {root!r})
    from tests.test_model import synth_data
    from causalscene.dag import CausalDAG
    from causalscene.model import CausalVAE
    from causalscene.train import TrainConfig, fit
    from causalscene.train.distributed import GradientAllReduce, join_process_group

    device, world, rank = join_process_group(torch.device("cuda"))
    # the all-reduce alone, captured: replays average what each rank holds at replay time
    p = torch.nn.Parameter(torch.zeros(5, 3, device=device))
    q = torch.nn.Parameter(torch.zeros(7, device=device))
    p.grad, q.grad = torch.zeros_like(p), torch.zeros_like(q)
    reduce = GradientAllReduce([p, q], world)
    reduce()  # NCCL's communicator before the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        reduce()
    replays = []
    for value in (rank + 1.0, 10.0 * rank):
        p.grad.fill_(value)
        q.grad.fill_(-value)
        graph.replay()
        replays.append([p.grad.unique().tolist(), q.grad.unique().tolist()])
    # a captured run: each rank from its own initialisation, its own half of each epoch
    dag = CausalDAG.load({dag!r})
    cfg = TrainConfig(epochs=3, batch_size=32, latent_dim=3, base_channels=4, device="cuda",
                      cuda_graph=True, validate=False, progress=False, seed=0)
    torch.manual_seed(rank)
    model = CausalVAE(dag, 16, 3, base_channels=4)
    history = fit(model, synth_data(dag, 320, 16, seed=1), cfg, out=os.path.join(sys.argv[1], "run"))
    torch.save(model.state_dict(), os.path.join(sys.argv[1], "rank%d.pt" % rank))
    with open(os.path.join(sys.argv[1], "rank%d.json" % rank), "w") as f:
        json.dump(dict(replays=replays, history=history), f)
    """
)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="captured steps under torchrun need 2 GPUs (device runs)",
)
def test_captured_steps_on_two_gpus_average_gradients_and_stay_in_sync(tmp_path):
    script = tmp_path / "captured.py"
    script.write_text(
        _CUDA_SCRIPT.format(root=str(ROOT), dag=str(ROOT / "dags" / "rpg_fight.yaml"))
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in results:  # ranks hold 1, 2 then 0, 10: the means 1.5 and 5, negated for q
        assert r["replays"] == [[[1.5], [-1.5]], [[5.0], [-5.0]]]
    a, b = (
        torch.load(tmp_path / f"rank{r}.pt", weights_only=True, map_location="cpu") for r in (0, 1)
    )
    for key in a:  # from different initialisations to rank 0's weights, bit for bit
        assert torch.equal(a[key], b[key]), key
    history = results[0]["history"]
    assert [h["world_size"] for h in history] == [2, 2, 2]
    assert history[0]["step"] == (288 // 2) // 32  # 288 training images, halves, full batches
    assert history[-1]["heldout_elbo"] > history[0]["heldout_elbo"]
