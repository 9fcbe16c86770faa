"""Training options: :class:`TrainConfig`, checked in one place (:meth:`TrainConfig.check`),
and the rules for which of them may change when a run is resumed.

No torch here: the CLI builds its parser from these defaults without importing it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from causalscene.options import TRAIN_RANGES, check_numbers

#: config fields that may change on ``--resume`` (everything else must match the checkpoint).
RESUME_MAY_CHANGE = (
    "epochs",
    "device",
    "progress",
    "out",
    "validate",
    "collapse_labels",
    "checkpoint_every",
    "log_every",
    "eval_every",
    "save_every",
)
#: config fields added after checkpoints were first written, with the value that an older
#: checkpoint's run used (it predates them), so ``--resume`` of an old run is checked correctly
FIELDS_BEFORE_THEY_EXISTED = {
    "consistency_weight": 0.0,
    "consistency_fraction": 1.0,
    "model": "vae",
    "beta1": 0.9,
    "beta2": 0.999,
}
#: the models ``train`` builds: ``vae`` (a CausalVAE over ``dag``, or with ``no_dag`` a PlainVAE)
#: and ``dcgan`` (:class:`causalscene.gan.DCGAN`, no DAG, labels ignored)
MODELS = ("vae", "dcgan")
#: defaults that differ from the dataclass's (the VAE's) per model: DCGAN's are Radford et al.
#: (2015)'s — Adam lr 2e-4, beta1 0.5, a 100-dimensional z
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "vae": {},
    "dcgan": {"lr": 2e-4, "beta1": 0.5, "latent_dim": 100},
}
#: VAE-only settings a dcgan run refuses (field → its flag); the other VAE-only fields
#: (likelihood, aux/consistency weights, spike_factor) have defaults and are ignored
NOT_FOR_DCGAN = {
    "dag": "--dag",
    "learn_cpts": "--learn-cpts",
    "sdr_weight": "--sdr-weight",
    "collapse_labels": "--collapse-labels",
    "cuda_graph": "--cuda-graph",
}


@dataclass
class TrainConfig:
    """Training options (the CLI's flags map onto these; defaults fit a 2-core CPU in minutes)."""

    model: str = "vae"  #: one of :data:`MODELS`
    dag: str | None = None  #: DAG file (None with ``no_dag``)
    data: str | None = None  #: dataset folder (procgen format)
    out: str | None = None  #: run folder
    epochs: int = 8
    batch_size: int = 32
    lr: float = 2e-3
    beta1: float = 0.9  #: Adam's betas (every optimiser of the run)
    beta2: float = 0.999
    latent_dim: int = 8
    likelihood: str = "gaussian"
    base_channels: int = 16
    device: str = "auto"  #: auto | cpu | cuda | cuda:K
    seed: int = 0
    learn_cpts: bool = False
    no_dag: bool = False
    sdr_weight: float = 0.0
    aux_weight: float = 1.0  #: weight of the classifier's cross-entropy on observed labels
    #: weight of the decoder's label-consistency term (:meth:`CausalVAE.consistency_loss`) *per
    #: pixel*: the term enters the per-image loss as ``consistency_weight * H * W * CE``, so it
    #: keeps its share of the -ELBO (a sum over pixels) at any image size; 0: the plain ELBO.
    #: What it buys (intervention fidelity, held-out ELBO), measured: README, Limits
    consistency_weight: float = 0.25
    #: share of each batch the consistency term is computed on (its first ``round(f * B)``
    #: images, a uniform sample since batches are shuffled; the term is a batch mean, so this is an
    #: unbiased estimate of it at a fraction of the cost of its extra encode, decode and
    #: classifier pass). Below 1 it pays off only with many steps: on the 64 px GPU budget 0.25
    #: kept every node's fidelity ≥ 0.93 at 94k images/s (1.0: 70k), but on small planted CPU data
    #: (600 images, batch 32) 0.125 left min fidelity at 0.56 (1.0: ≥ 0.9). Measured: README, Limits
    consistency_fraction: float = 1.0
    holdout_fraction: float = 0.1
    max_images: int | None = None  #: use only the first N images of the dataset
    checkpoint_every: int = 100  #: steps between checkpoints (and one at each epoch end)
    log_every: int = 10  #: steps between host reads of the loss (progress bar, NaN guard)
    #: epochs between the held-out ELBO and the sample/reconstruction grids (always after the
    #: last epoch); other epochs record ``heldout_elbo: null``. On the 64 px GPU budget each costs
    #: 87 + 83 ms, 17 s of 109 over 100 epochs (measured, docs/benchmarks.md)
    eval_every: int = 1
    #: epochs between epoch-end checkpoints (always after the last epoch; a killed run resumes
    #: from the newest, losing at most this many epochs). Each costs 115 ms on the GPU budget
    save_every: int = 1
    grid_size: int = 16
    bf16: bool = False
    channels_last: bool = False
    progress: bool = True
    validate: bool = False  #: Pyro's distribution argument checks (slower; tests turn them on)
    #: complete labels + fixed CPTs: precompute the parameter-free log p(labels) once and leave
    #: the DAG sites out of each step (same gradient and ELBO; less per-step Python overhead)
    collapse_labels: bool = False
    #: rescale a step's gradient whose norm exceeds this many times the running mean of recent
    #: norms (0: off). Measured on the GPU (rpg, lr 2e-3, batch 512): without it held-out ELBO
    #: fell 23.7k → 2.0k at epoch 63 and never recovered; with it, no collapse in 100 epochs. It
    #: does not replace a sane learning rate (faces at lr 2e-3 still collapsed; 1e-3 did not)
    spike_factor: float = 5.0
    #: capture the whole step (Pyro loss, backward, Adam) as one CUDA graph and replay it: no
    #: per-step Python (Pyro's tracing runs once). CUDA only; under torchrun each process captures
    #: its own step, the gradients' all-reduce inside (no DDP); drops the epoch's last
    #: incomplete batch (a graph has static shapes). What it needs of the device and the data:
    #: :func:`causalscene.train.graph.check_cuda_graph`
    cuda_graph: bool = False
    #: compile the model's networks (each child module that holds convolutions: encoder, decoder,
    #: classifier; a GAN's two nets) with ``torch.compile``: their elementwise work (biases, SiLU,
    #: the decoder's label shifts, the casts) fused around the convolutions, in inductor's
    #: deterministic mode (same seed, same numbers). One H200, the budget's captured step: 102k →
    #: 119k images/s, after a one-off compile of tens of seconds per batch shape (cached on disk;
    #: docs/benchmarks.md); it pays off on long runs. Weights and checkpoints unchanged
    compile: bool = False

    def check(self) -> None:
        """Raise one clear ``ValueError`` for a setting no run can use (the checks that need the
        data or the device — ``cuda_graph``'s — come once those are known).

        (Not named ``validate``: that is a field, Pyro's argument checks, recorded in every run.)"""
        if self.model not in MODELS:
            raise ValueError(f"unknown model '{self.model}' (known: {', '.join(MODELS)})")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0:
            raise ValueError("batch_size must be >= 1, epochs >= 0 and lr > 0")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"Adam's betas must lie in [0, 1), got {self.beta1}, {self.beta2}")
        if self.model == "dcgan":
            self._check_dcgan()
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.consistency_weight < 0:
            raise ValueError(f"consistency_weight must be >= 0, got {self.consistency_weight}")
        if not 0.0 < self.consistency_fraction <= 1.0:
            raise ValueError(
                f"consistency_fraction must be in (0, 1], got {self.consistency_fraction}"
            )
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError(
                f"checkpoint_every and log_every must be >= 1 (steps), got "
                f"{self.checkpoint_every} and {self.log_every}"
            )
        check_numbers(self, TRAIN_RANGES)  # every numeric field: type, NaN/inf, range

    def _check_dcgan(self) -> None:
        """A DCGAN has no DAG, labels or ELBO: refuse the VAE-only settings that would be set."""
        default = TrainConfig()
        for name, flag in NOT_FOR_DCGAN.items():
            if getattr(self, name) != getattr(default, name):
                raise ValueError(f"{flag} is for VAEs: --model dcgan has no DAG, labels or ELBO")

    @classmethod
    def for_model(cls, model: str = "vae", **fields: Any) -> TrainConfig:
        """A config for ``model`` with its :data:`MODEL_DEFAULTS`; ``fields`` that are None keep
        the default (how the CLI passes flags it did not get)."""
        if model not in MODELS:
            raise ValueError(f"unknown model '{model}' (known: {', '.join(MODELS)})")
        given = {k: v for k, v in fields.items() if v is not None}
        return cls(model=model, **{**MODEL_DEFAULTS[model], **given})

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (what checkpoints record and ``--resume`` compares)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> TrainConfig:
        """A config from recorded fields, ignoring any this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})
