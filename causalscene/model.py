"""The CausalVAE: a Pyro model whose sample sites are the DAG's nodes, plus a latent ``z``, feeding a
conv decoder — and :class:`PlainVAE`, the same networks without a DAG.

Generative story of :class:`CausalVAE` (one image; sites named as in the DAG file)::

    for node in topological order:          # e.g. actor, actor_type, actor_strength, ... reaction
        node ~ Categorical(CPT[node][parents])   # hidden nodes: summed out exactly (enumeration)
    z ~ Normal(0, I_D)
    x ~ p(x | decoder([z ; one-hot(rendered nodes)]))

       DAG nodes (hidden ones dashed)          z
          actor ─► actor_strength ┄► action      │
                └────────────────────┐ │       │
                                     ▼ ▼       ▼
                              decoder(one-hots of rendered nodes, z) ─► x

Hidden nodes never enter the decoder: they reach ``x`` only through their rendered children, so
with the labels of the rendered nodes given, ``p(hidden | labels, x) = p(hidden | labels)`` — the
exact query of :func:`causalscene.queries.condition` (tested both ways).

Training is amortised variational inference (Kingma & Welling 2014) with the semi-supervised
scheme of Kingma et al. (2014, "M2"; Pyro's SS-VAE tutorial): the guide is

    q(z | x, rendered labels) = Normal(encoder(x, one-hots))             (reparameterised)
    q(node | x) = Categorical(classifier(x)[node])    for rendered nodes whose label is missing

Observed labels enter the model with ``obs=`` (a whole column observed in the batch), or — for a
column with missing entries (code -1) — the guide pins the observed rows to a point mass at their
label and draws only the missing rows from the classifier (a per-example mask: the ELBO term of
an observed row is exactly ``log p(label | parents)``). The classifier is also trained on the
observed labels with the auxiliary cross-entropy of Kingma et al. (2014, eq. 9); it serves
``infer_hidden`` and counterfactuals from an unlabelled image. The ELBO is Pyro's
``TraceEnum_ELBO`` (parallel enumeration of the hidden nodes, ``max_plate_nesting=1``).

The ELBO alone decodes every image with its *own* labels, so it never asks what the decoder does
under ``do``: z is free to carry a label's look too (hair colour is one colour axis in z), and a
decoder that follows z over the one-hot passes the ELBO yet ignores interventions (measured: 64 px
faces, do(blond_hair) read back 0.71). :meth:`CausalVAE.consistency_loss` — the trainer adds it
with ``consistency_weight`` — decodes each training image's z with one rendered label redrawn at
random and asks the (frozen) classifier to read the intervened labels back, as attribute-editing
models do with an attribute classifier (AttGAN, He et al. 2019). It is an auxiliary term beside the
ELBO, like the classifier's cross-entropy, not part of the probabilistic model.

Image likelihood (``likelihood=``): default ``"gaussian"`` — a Normal with mean ``sigmoid(logits)``
and a learned scale per colour channel. The learned scale sets the balance between reconstruction
and KL by maximum likelihood instead of a hand-tuned beta, and the L2 gradient carries the size of
the error, so the decoder learns to use the label one-hots quickly. ``"laplace"`` (learned scale)
is offered for sharper edges on flat-colour scenes, but measured here it learns far slower: its
gradient is only the *sign* of the error (planted 16 px data, same networks: Gaussian read back
every attribute >= 95% after 15 epochs; Laplace's decoded images were still near-black after 20).
``"cbernoulli"`` (continuous Bernoulli,
Loaiza-Ganem & Cunningham 2019 — the correctly normalised Bernoulli for [0, 1] pixels; its mean is
not ``sigmoid(logits)``, we decode its mean) is there for comparison.

With ``learn_cpts=True`` every CPT row gets a Dirichlet(``cpt_prior``) prior and a Dirichlet
variational posterior (sites ``cpt_<node>``, scaled by batch/N so the minibatch ELBO is unbiased);
:meth:`CausalVAE.learned_cpts` returns the posterior means and :meth:`CausalVAE.query_dag` a DAG
with them, for the exact queries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.ops.indexing import Vindex
from torch import nn
from torch.nn import functional as F

from causalscene.dag import CausalDAG
from causalscene.nets import Classifier, Decoder, Encoder
from causalscene.tensors import seeded_generator, to_float_images

if TYPE_CHECKING:
    from causalscene.train.config import TrainConfig
    from causalscene.train.data import TrainData
    from causalscene.train.steps import TrainingStep

__all__ = [
    "CausalVAE",
    "PlainVAE",
    "Trainable",
    "TrainableVAE",
    "CausalGenerator",
    "ImageLikelihood",
    "LIKELIHOODS",
    "to_float_images",
]

LIKELIHOODS = ("laplace", "gaussian", "cbernoulli")
Labels = Mapping[str, torch.Tensor]


class ImageLikelihood(nn.Module):
    """p(x | logits): an image distribution with event shape ``[C, H, W]`` (see module docstring)."""

    def __init__(self, kind: str = "gaussian", channels: int = 3, init_scale: float = 0.1):
        super().__init__()
        if kind not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood '{kind}' (known: {', '.join(LIKELIHOODS)})")
        self.kind = kind
        self.log_scale = nn.Parameter(torch.full((channels, 1, 1), math.log(init_scale)))

    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(math.log(5e-3), 0.0).exp()

    def dist(self, logits: torch.Tensor) -> dist.TorchDistribution:
        if self.kind == "cbernoulli":
            return dist.ContinuousBernoulli(logits=logits.clamp(-15, 15)).to_event(3)
        mean = torch.sigmoid(logits)
        family = dist.Laplace if self.kind == "laplace" else dist.Normal
        return family(mean, self.scale().to(mean.dtype)).to_event(3)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "cbernoulli":
            return torch.distributions.ContinuousBernoulli(logits=logits.clamp(-15, 15)).mean
        return torch.sigmoid(logits)


# ---------------------------------------------------------------------------------- Trainable
class Trainable(nn.Module):
    """What :func:`causalscene.train.fit` asks of a model, and all it knows about it: the trainer
    never asks which class it has. Whatever differs between models during training (the DAG the
    dataset is checked against, the constant of collapsed label sites, how a step learns, the
    files of the run folder, the per-epoch grids) is one of these methods, implemented by
    :class:`TrainableVAE` (:class:`PlainVAE`, :class:`CausalVAE`) and
    :class:`causalscene.gan.DCGAN`.
    """

    image_size: int

    def config(self) -> dict:
        """Constructor arguments + ``kind`` (``model.json``; see ``causalscene.train.build_model``)."""
        raise NotImplementedError

    @property
    def label_dag(self) -> CausalDAG | None:
        """The DAG whose label nodes a training dataset must hold (None: labels are not used)."""
        raise NotImplementedError

    def set_data_size(self, n: int) -> None:
        """Tell the model how many training images there are (scales its global sites)."""

    def collapsed_log_p_labels(self, labels: Mapping[str, object]) -> torch.Tensor | None:
        """``log p(labels)`` per example ``[N]`` when the label sites can be left out of each step
        (``TrainConfig.collapse_labels``); None when they cannot (or there are none)."""
        return None

    def training_step(
        self, config: TrainConfig, data: TrainData, device: torch.device, world: int
    ) -> TrainingStep:
        """How this model learns: a :class:`causalscene.train.steps.TrainingStep` (its
        optimisers, its update on a batch, the numbers an epoch reports) for one run."""
        raise NotImplementedError

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` images from the model's prior ``[n, C, H, W]`` in [0, 1]."""
        raise NotImplementedError

    def epoch_grids(
        self, n: int, seed: int, x: torch.Tensor, labels: Labels
    ) -> dict[str, tuple[torch.Tensor, int]]:
        """The image grids written at each epoch's end: ``{file prefix: (images, columns)}``
        (``samples_eNNN.png``: ``n`` prior samples; models may add more from the held-out
        images ``x`` ``[b, C, H, W]`` in [0, 1] and their ``labels``)."""
        return {"samples": (self.sample(n, seed=seed), 8)}

    def run_files(self) -> dict[str, object]:
        """JSON files describing the model in a run folder: ``{file name: content}``."""
        return {"model.json": self.config()}


# ------------------------------------------------------------------------------- TrainableVAE
class TrainableVAE(Trainable):
    """A VAE trained by SVI (:class:`causalscene.train.steps.SVIStep`): a Pyro ``model`` and
    ``guide``, auxiliary terms, reconstructions.

    Tensors: ``x [B, C, H, W]`` floats in [0, 1]; ``labels {node: int64 [B]}`` (-1: missing).
    """

    decoder: nn.Module

    def model(
        self, x: torch.Tensor, labels: Labels | None = None, partial=None, collapse: bool = False
    ) -> None:
        """The Pyro model (sites ``z``, ``x`` and, for a CausalVAE, the DAG's nodes)."""
        raise NotImplementedError

    def guide(
        self, x: torch.Tensor, labels: Labels | None = None, partial=None, collapse: bool = False
    ) -> None:
        """The Pyro guide, matching :meth:`model`."""
        raise NotImplementedError

    def aux_loss(self, x: torch.Tensor, labels: Labels | None = None) -> torch.Tensor:
        """The classifier's auxiliary cross-entropy on the observed labels (0 without one)."""
        raise NotImplementedError

    def consistency_loss(
        self, x: torch.Tensor, labels: Labels | None = None, partial=None
    ) -> torch.Tensor:
        """The decoder's label-consistency term (0 without labels)."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor, labels: Labels | None = None) -> torch.Tensor:
        """Decoded posterior means of ``x`` given its labels (where the model uses them)."""
        raise NotImplementedError

    def training_step(
        self, config: TrainConfig, data: TrainData, device: torch.device, world: int
    ) -> TrainingStep:
        """SVI on the -ELBO and its auxiliary terms (:class:`causalscene.train.steps.SVIStep`)."""
        from causalscene.train.steps import SVIStep

        return SVIStep(self, config, data, device, world)

    def epoch_grids(
        self, n: int, seed: int, x: torch.Tensor, labels: Labels
    ) -> dict[str, tuple[torch.Tensor, int]]:
        """``samples`` and ``recon`` (held-out originals over their reconstructions)."""
        grids = super().epoch_grids(n, seed, x, labels)
        if len(x):
            grids["recon"] = (torch.cat([x, self.reconstruct(x, labels).float()]), len(x))
        return grids


# ---------------------------------------------------------------------------------------- PlainVAE
class PlainVAE(TrainableVAE):
    """A VAE without a DAG: ``z ~ N(0, I)``, ``x ~ p(x | decoder(z))``; guide ``q(z | x)``.

    It is a *Generator* (see :class:`CausalGenerator`): ``forward(z) == decode(z)`` → images
    ``[B, C, H, W]`` in [0, 1], ``encode(x)`` → posterior mean ``[B, D]``, ``sample_latents(n)``.
    """

    def __init__(
        self,
        image_size: int,
        latent_dim: int = 16,
        likelihood: str = "gaussian",
        base_channels: int = 32,
        in_channels: int = 3,
    ):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.encoder = Encoder(image_size, latent_dim, 0, in_channels, base_channels)
        self.decoder = Decoder(image_size, latent_dim, in_channels, base_channels)
        self.likelihood = ImageLikelihood(likelihood, in_channels)

    def config(self) -> dict:
        return {
            "kind": "plain",
            "image_size": self.image_size,
            "latent_dim": self.latent_dim,
            "likelihood": self.likelihood.kind,
            "base_channels": self.base_channels,
            "in_channels": self.in_channels,
        }

    # Pyro program ------------------------------------------------------------------------------
    def model(
        self, x: torch.Tensor, labels: Labels | None = None, partial=(), collapse=False
    ) -> None:
        """``z ~ N(0, I)``, ``x ~ p(x | decoder(z))``; ``labels`` are ignored (no DAG)."""
        batch = x.shape[0]
        with pyro.plate("data", batch, dim=-1):
            zeros = x.new_zeros(batch, self.latent_dim)
            z = pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            pyro.sample("x", self.likelihood.dist(_full(self.decoder(z))), obs=x)

    def guide(
        self, x: torch.Tensor, labels: Labels | None = None, partial=(), collapse=False
    ) -> None:
        with pyro.plate("data", x.shape[0], dim=-1):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(_full(loc), _full(scale)).to_event(1))

    def aux_loss(self, x: torch.Tensor, labels: Labels | None = None) -> torch.Tensor:
        return x.new_zeros(())

    def consistency_loss(self, x: torch.Tensor, labels: Labels | None = None, partial=None):
        """No labels to intervene on: 0 (see :meth:`CausalVAE.consistency_loss`)."""
        return x.new_zeros(())

    # Generator protocol --------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z ``[B, D]`` → mean image ``[B, C, H, W]`` in [0, 1]."""
        return self.likelihood.mean(self.decoder(z))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, C, H, W]`` in [0, 1] → posterior mean of z ``[B, D]``."""
        return self.encoder(to_float_images(x))[0]

    def reconstruct(self, x: torch.Tensor, labels: Labels | None = None) -> torch.Tensor:
        return self.decode(self.encode(x))

    def as_generator(self) -> PlainVAE:
        """The :class:`~causalscene.generators.Generator` view: the VAE itself."""
        return self

    def sample_latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        generator = seeded_generator(seed)
        return torch.randn(n, self.latent_dim, generator=generator).to(device)

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` images from the prior ``[n, C, H, W]``."""
        return self.decode(self.sample_latents(n, seed))

    # what the trainer asks (TrainableVAE) -----------------------------------------------------------
    @property
    def label_dag(self) -> CausalDAG | None:
        """None: a PlainVAE uses no labels, so a dataset needs none."""
        return None

    def set_data_size(self, n: int) -> None:
        """Nothing to scale: every site is per image."""

    def collapsed_log_p_labels(self, labels: Mapping[str, object]) -> torch.Tensor | None:
        """None: no label sites to leave out."""
        return None

    def run_files(self) -> dict[str, object]:
        """``model.json``."""
        return {"model.json": self.config()}


# --------------------------------------------------------------------------------------- CausalVAE
class CausalVAE(TrainableVAE):
    """Pyro model pairing a :class:`~causalscene.dag.CausalDAG` with a conv decoder (module docstring).

    Args:
        dag: the causal DAG; its rendered nodes condition the decoder, hidden nodes are summed out.
        image_size: height = width of the images (power of two >= 8).
        latent_dim: D, size of the continuous latent ``z``.
        likelihood: ``"gaussian"`` (default), ``"laplace"`` or ``"cbernoulli"``.
        learn_cpts: learn the CPTs (Dirichlet prior ``cpt_prior``, Dirichlet posterior) instead of
            taking them from the DAG file.
        base_channels: width of the conv nets.

    Tensors: ``x [B, C, H, W]`` floats in [0, 1]; ``labels {node: int64 [B]}`` state indices, -1 for
    a missing label; ``z [B, D]``.
    """

    def __init__(
        self,
        dag: CausalDAG,
        image_size: int,
        latent_dim: int = 16,
        likelihood: str = "gaussian",
        learn_cpts: bool = False,
        base_channels: int = 32,
        in_channels: int = 3,
        cpt_prior: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not dag.rendered_nodes:
            raise ValueError(
                f"DAG '{dag.name}' has no rendered node: nothing conditions the decoder"
            )
        self.dag = dag
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.in_channels = in_channels
        self.learn_cpts = learn_cpts
        self.cpt_prior = cpt_prior
        self.rendered = list(dag.rendered_nodes)
        self.cards = {n: dag.cardinality(n) for n in dag.nodes}
        self.cond_dim = sum(self.cards[n] for n in self.rendered)
        self.data_size = 1  # N, set by the trainer (scales the global CPT sites)
        self._node_index = {n: i for i, n in enumerate(dag.nodes)}
        for node, i in self._node_index.items():
            self.register_buffer(
                f"cpt_{i}", torch.tensor(np.array(dag.cpt(node)), dtype=torch.float32)
            )
        if learn_cpts:
            generator = torch.Generator().manual_seed(seed)
            self.cpt_concentration = nn.ParameterList(
                [
                    nn.Parameter(
                        _softplus_inverse(1.0 + torch.rand(dag.cpt(n).shape, generator=generator))
                    )
                    for n in dag.nodes
                ]
            )
        self.base_channels = base_channels
        self.encoder = Encoder(image_size, latent_dim, self.cond_dim, in_channels, base_channels)
        self.decoder = Decoder(
            image_size, latent_dim + self.cond_dim, in_channels, base_channels, self.cond_dim
        )
        self.classifier = Classifier(
            image_size, {n: self.cards[n] for n in self.rendered}, in_channels
        )
        self.likelihood = ImageLikelihood(likelihood, in_channels)
        self._marginals: dict[str, torch.Tensor] | None = None

    def config(self) -> dict:
        return {
            "kind": "causal",
            "image_size": self.image_size,
            "latent_dim": self.latent_dim,
            "likelihood": self.likelihood.kind,
            "learn_cpts": self.learn_cpts,
            "base_channels": self.base_channels,
            "in_channels": self.in_channels,
            "cpt_prior": self.cpt_prior,
        }

    # ------------------------------------------------------------------------ per-site mechanisms
    def _fixed_cpt(self, node: str) -> torch.Tensor:
        return getattr(self, f"cpt_{self._node_index[node]}")

    def _posterior_concentration(self, node: str) -> torch.Tensor:
        return F.softplus(self.cpt_concentration[self._node_index[node]]) + 1e-3

    def _cpt_sites(self, batch: int, guide: bool) -> dict[str, torch.Tensor]:
        """CPT tensors for this pass: buffers, or (``learn_cpts``) Dirichlet sites ``cpt_<node>``."""
        if not self.learn_cpts:
            return {n: self._fixed_cpt(n) for n in self.dag.nodes}
        out = {}
        with poutine.scale(scale=batch / max(self.data_size, batch)):
            for node in self.dag.nodes:
                shape = self._fixed_cpt(node).shape
                if guide:
                    concentration = self._posterior_concentration(node)
                else:
                    concentration = self._fixed_cpt(node).new_full(shape, self.cpt_prior)
                out[node] = pyro.sample(
                    f"cpt_{node}", dist.Dirichlet(concentration).to_event(len(shape) - 1)
                )
        return out

    def node_dist(self, node: str, cpt: torch.Tensor, values: Mapping[str, torch.Tensor]):
        """p(node | parents) = Categorical(CPT[node][parent values]) (parents may be enumerated)."""
        parents = self.dag.parents(node)
        if not parents:
            return dist.Categorical(probs=cpt)
        return dist.Categorical(
            probs=Vindex(cpt)[tuple(values[p] for p in parents) + (slice(None),)]
        )

    def _onehot(self, values: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """``[B, cond_dim]``: concatenated one-hots (or given probability vectors) of rendered nodes."""
        parts = []
        for node in self.rendered:
            v = values[node]
            parts.append(
                v.to(dtype) if v.is_floating_point() else F.one_hot(v, self.cards[node]).to(dtype)
            )
        return torch.cat(parts, dim=-1)

    def x_dist(self, z: torch.Tensor, onehot: torch.Tensor) -> dist.TorchDistribution:
        """p(x | rendered nodes, z) with decoder input ``u = [z ; one-hots]``."""
        logits = self.decoder(torch.cat([z, onehot.to(z.dtype)], dim=-1))
        return self.likelihood.dist(_full(logits))  # float32 likelihood under bf16 autocast

    # --------------------------------------------------------------------------- Pyro program
    def _dag_sites(
        self,
        cpts: Mapping[str, torch.Tensor],
        labels: Labels,
        partial: tuple[str, ...] | frozenset,
        evidence_loglik: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One sample site per DAG node, in topological order (inside the data plate)."""
        values: dict[str, torch.Tensor] = {}
        rendered = set(self.rendered)
        for node in self.dag.nodes:
            fn = self.node_dist(node, cpts[node], values)
            codes = labels.get(node)
            if codes is not None and node not in partial:
                value = pyro.sample(node, fn, obs=codes)
            elif node in rendered and evidence_loglik is None:
                value = pyro.sample(node, fn)  # drawn by the guide's q(node | x) / pinned labels
            else:
                value = pyro.sample(node, fn, infer={"enumerate": "parallel"})
            if evidence_loglik is not None and node in evidence_loglik:
                table = evidence_loglik[node]  # [B, card]
                rows = torch.arange(table.shape[0], device=table.device)
                pyro.factor(f"{node}__evidence", Vindex(table)[rows, value])
            values[node] = value
        return values

    def model(
        self, x: torch.Tensor, labels: Labels | None = None, partial=None, collapse: bool = False
    ) -> None:
        """The generative model (module docstring). ``partial``: label columns with missing entries.

        ``collapse=True`` (complete labels, fixed CPTs only) leaves the DAG sites out: their
        exact contribution ``log p(labels)`` (hidden nodes summed out) holds no parameter, so the
        trainer adds it back as a precomputed constant (:meth:`log_p_labels`) — same gradient,
        same ELBO value, fewer Python-level sample sites per step."""
        labels = labels or {}
        partial = self._partial(labels) if partial is None else frozenset(partial)
        batch = x.shape[0]
        cpts = {} if collapse else self._cpt_sites(batch, guide=False)
        with pyro.plate("data", batch, dim=-1):
            if collapse:
                values = {n: labels[n] for n in self.rendered}
            else:
                values = self._dag_sites(cpts, labels, partial)
            zeros = x.new_zeros(batch, self.latent_dim)
            z = pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            pyro.sample("x", self.x_dist(z, self._onehot(values, x.dtype)), obs=x)

    def guide(
        self, x: torch.Tensor, labels: Labels | None = None, partial=None, collapse: bool = False
    ) -> None:
        """q(z | x, rendered labels) and, for missing rendered labels, q(node | x)."""
        labels = labels or {}
        partial = self._partial(labels) if partial is None else frozenset(partial)
        batch = x.shape[0]
        self._cpt_sites(batch, guide=True)
        with pyro.plate("data", batch, dim=-1):
            values: dict[str, torch.Tensor] = {}
            logits = None
            for node in self.rendered:
                codes = labels.get(node)
                if codes is not None and node not in partial:
                    values[node] = codes
                    continue
                if logits is None:
                    logits = self.classifier(x)
                probs = torch.softmax(logits[node].to(x.dtype), dim=-1)
                if codes is not None:  # per-example mask: observed rows are a point mass
                    seen = (codes >= 0).unsqueeze(-1)
                    pinned = F.one_hot(codes.clamp(min=0), self.cards[node]).to(probs.dtype)
                    probs = torch.where(seen, pinned, probs)
                values[node] = pyro.sample(node, dist.Categorical(probs=probs))
            loc, scale = self.encoder(x, self._onehot(values, x.dtype))
            pyro.sample("z", dist.Normal(_full(loc), _full(scale)).to_event(1))

    def log_p_labels(self, labels: Mapping[str, object]) -> torch.Tensor | None:
        """Exact ``log p(labels)`` per example ``[N]`` (hidden nodes summed out), from the joint of
        the label nodes by :func:`causalscene.queries.condition`; None when that joint is too
        large (> 2**22 cells) or a label is missing."""
        from causalscene.queries import condition

        dag = self.query_dag()
        nodes = dag.label_nodes
        if not nodes or math.prod(self.cards[n] for n in nodes) > 2**22:
            return None
        codes = [np.asarray(torch.as_tensor(labels[n]).cpu()) for n in nodes]
        if any((c < 0).any() for c in codes):
            return None
        table = condition(dag, nodes).probs
        with np.errstate(divide="ignore"):
            return torch.as_tensor(np.log(table[tuple(codes)]), dtype=torch.float32)

    def _partial(self, labels: Labels) -> frozenset:
        """Label columns holding a missing entry (-1). One host sync per column: callers in a hot
        loop pass ``partial=`` precomputed."""
        return frozenset(n for n, c in labels.items() if n in self.cards and bool((c < 0).any()))

    def aux_loss(self, x: torch.Tensor, labels: Labels | None = None) -> torch.Tensor:
        """Mean cross-entropy of q(node | x) on the observed rendered labels (Kingma et al. 2014, eq. 9)."""
        labels = labels or {}
        logits = self.classifier(x)
        total = x.new_zeros(())
        for node in self.rendered:
            codes = labels.get(node)
            if codes is None:
                continue
            seen = (codes >= 0).sum().clamp(min=1)  # an all-missing column adds 0, not NaN
            ce = F.cross_entropy(logits[node].float(), codes, ignore_index=-1, reduction="sum")
            total = total + ce / seen
        return total

    def consistency_loss(
        self, x: torch.Tensor, labels: Labels | None = None, partial=None
    ) -> torch.Tensor:
        """Label consistency of the decoder *off* the data: mean over the batch of
        ``Σ_node CE(q(node | decode(z, s')), s'_node)`` with ``z`` the encoder's mean for the real
        image and ``s'`` its factual labels with *one* rendered node (chosen uniformly per image)
        redrawn uniformly at random — do(node = s) on that image, as :func:`generate.evaluate`
        and counterfactuals ask of the decoder. The redrawn node must be read back, and the others
        must keep their factual values. The classifier q(node | x) is *frozen* here (parameters
        detached), so only the encoder and decoder answer to it.

        Why: the ELBO only ever decodes an image with its own labels, so nothing stops ``z`` from
        carrying a label's look as well (hair colour is one continuous colour in z-space) and the
        decoder from following z over the one-hot — then do(blond_hair = yes) on a dark-haired z
        stays dark. Redrawing every node at once was tried first: it works at 64 px but, on small
        planted data, pushed the decoder to images that fool the classifier off the data manifold
        (an oracle read age back 0.79 of the time; one node at a time: 0.97).

        Missing labels (-1) take q(node | x) as the factual one-hot (and its mode as the value to
        keep); ``partial`` as in :meth:`model`."""
        labels = labels or {}
        partial = self._partial(labels) if partial is None else frozenset(partial)
        batch = x.shape[0]
        logits = None
        factual, drawn = {}, {}
        target = torch.randint(len(self.rendered), (batch,), device=x.device)  # do() on this node
        for i, node in enumerate(self.rendered):
            codes = labels.get(node)
            if codes is None or node in partial:
                logits = self.classifier(x) if logits is None else logits
                probs = torch.softmax(logits[node].detach().float(), dim=-1)
                guess = probs.argmax(-1)
                if codes is not None:
                    pinned = F.one_hot(codes.clamp(min=0), self.cards[node]).to(probs.dtype)
                    probs = torch.where((codes >= 0).unsqueeze(-1), pinned, probs)
                    guess = torch.where(codes >= 0, codes, guess)
                factual[node], codes = probs, guess
            else:
                factual[node] = codes
            new = torch.randint(self.cards[node], (batch,), device=x.device)
            drawn[node] = torch.where(target == i, new, codes)
        z = self.encoder(x, self._onehot(factual, x.dtype))[0]
        image = self.likelihood.mean(self.decoder(torch.cat([z, self._onehot(drawn, z.dtype)], -1)))
        frozen = {k: v.detach() for k, v in self.classifier.named_parameters()}
        read = torch.func.functional_call(self.classifier, frozen, (image,))
        total = x.new_zeros(())
        for node in self.rendered:
            total = total + F.cross_entropy(read[node].float(), drawn[node])
        return total

    # ---------------------------------------------------------------------- labels and checks
    def check_labels(self, labels: Mapping[str, object], batch: int) -> dict[str, torch.Tensor]:
        """Validate ``{node: codes}`` (names, shapes, ranges); return int64 tensors on the device."""
        device = self.device
        out = {}
        for node, codes in labels.items():
            if node not in self.cards:
                raise ValueError(
                    f"labels name unknown node '{node}' (DAG '{self.dag.name}': {', '.join(self.dag.nodes)})"
                )
            if node in self.dag.hidden_nodes:
                raise ValueError(
                    f"node '{node}' is hidden in DAG '{self.dag.name}': it cannot be a label"
                )
            tensor = torch.as_tensor(np.asarray(codes) if not torch.is_tensor(codes) else codes)
            tensor = tensor.to(device=device, dtype=torch.long).reshape(-1)
            if tensor.shape[0] != batch:
                raise ValueError(
                    f"labels of '{node}' have {tensor.shape[0]} entries, images {batch}"
                )
            if bool(((tensor < -1) | (tensor >= self.cards[node])).any()):
                raise ValueError(
                    f"labels of '{node}' must be state indices in [0, {self.cards[node]}) or -1 (missing)"
                )
            out[node] = tensor
        return out

    @property
    def device(self) -> torch.device:
        return self.encoder.fc.weight.device

    # ------------------------------------------------------------------------------ queries
    def learned_cpts(self) -> dict[str, np.ndarray]:
        """CPTs used by the model: posterior means (``learn_cpts``) or the DAG file's tables."""
        out = {}
        for node in self.dag.nodes:
            if self.learn_cpts:
                c = self._posterior_concentration(node).detach().double().cpu()
                out[node] = (c / c.sum(-1, keepdim=True)).numpy()
            else:
                out[node] = self._fixed_cpt(node).detach().double().cpu().numpy()
        return out

    def query_dag(self) -> CausalDAG:
        """The DAG whose CPTs the model uses (learned means with ``learn_cpts``), for exact queries."""
        return self.dag.with_cpts(self.learned_cpts()) if self.learn_cpts else self.dag

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """q(node | x) for every rendered node: ``{node: probs [B, card]}``."""
        logits = self.classifier(to_float_images(x).to(self.device))
        return {n: torch.softmax(logits[n].float(), -1) for n in self.rendered}

    @torch.no_grad()
    def encode(self, x: torch.Tensor, labels: Labels | None = None) -> torch.Tensor:
        """Posterior mean of z ``[B, D]`` given the image and its rendered labels (missing →
        the classifier's most probable state)."""
        x = to_float_images(x).to(self.device)
        codes = self.complete_labels(x, labels)
        return self.encoder(x, self._onehot(codes, x.dtype))[0]

    @torch.no_grad()
    def complete_labels(
        self, x: torch.Tensor, labels: Labels | None = None
    ) -> dict[str, torch.Tensor]:
        """Rendered labels with every missing entry (absent column or -1) filled by q(node | x)'s mode."""
        x = to_float_images(x).to(self.device)
        labels = self.check_labels(labels or {}, x.shape[0])
        out, guess = {}, None
        for node in self.rendered:
            codes = labels.get(node)
            if codes is None or bool((codes < 0).any()):
                guess = self.classify(x) if guess is None else guess
                mode = guess[node].argmax(-1)
                codes = mode if codes is None else torch.where(codes >= 0, codes, mode)
            out[node] = codes
        return out

    @torch.no_grad()
    def decode(self, z: torch.Tensor, codes: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean image ``[B, C, H, W]`` for latents z ``[B, D]`` and rendered node values
        ``{node: int64 [B]}`` (or probability vectors ``[B, card]``)."""
        z = z.to(self.device)
        onehot = self._onehot(
            {n: torch.as_tensor(codes[n]).to(self.device) for n in self.rendered}, z.dtype
        )
        return self.likelihood.mean(self.decoder(torch.cat([z, onehot], -1)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: Labels | None = None) -> torch.Tensor:
        x = to_float_images(x).to(self.device)
        codes = self.complete_labels(x, labels)
        return self.decode(self.encoder(x, self._onehot(codes, x.dtype))[0], codes)

    def _dag_marginals(self) -> dict[str, torch.Tensor]:
        if self._marginals is None:
            from causalscene.queries import condition

            dag = self.query_dag()
            self._marginals = {
                n: torch.as_tensor(condition(dag, [n]).probs, dtype=torch.float32)
                for n in self.rendered
            }
        return self._marginals

    @torch.no_grad()
    def infer_hidden(
        self,
        x: torch.Tensor | None = None,
        labels: Labels | None = None,
        batch_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Posterior of every hidden node: ``{node: probs [B, card]}``, summed out exactly by Pyro.

        With all rendered labels given, this is ``p(hidden | labels)`` (the image adds nothing: the
        hidden nodes reach it only through the labels). Missing labels are read off the image as
        *soft evidence*: q(node | x) / p(node) multiplies in as a likelihood (one factor per
        rendered node; Pearl's virtual evidence), i.e. p(h | x) ∝ Σ_r p(h, r) Π_k q(r_k|x)/p(r_k).
        """
        if x is None and labels is None:
            raise ValueError("infer_hidden needs images x or labels")
        if x is not None:
            x = to_float_images(x).to(self.device)
            batch = x.shape[0]
        else:
            assert labels is not None
            batch = len(next(iter(labels.values())))
        labels = self.check_labels(labels or {}, batch)
        if not self.dag.hidden_nodes:
            return {}
        loglik = {}
        missing = [n for n in self.rendered if n not in labels]
        partial = [n for n, c in labels.items() if bool((c < 0).any())]
        if (missing or partial) and x is None:
            raise ValueError(f"labels of {', '.join(missing + partial)} missing and no image given")
        if missing or partial:
            assert x is not None  # checked above
            probs = self.classify(x)
            prior = self._dag_marginals()
            for node in missing + partial:
                ratio = (
                    probs[node].clamp_min(1e-12).log()
                    - prior[node].to(self.device).clamp_min(1e-12).log()
                )
                if node in labels:  # observed rows: a point mass at the label
                    codes = labels.pop(node)
                    pinned = torch.where(
                        F.one_hot(codes.clamp(min=0), self.cards[node]).bool(), 0.0, -math.inf
                    )
                    ratio = torch.where((codes >= 0).unsqueeze(-1), pinned, ratio)
                loglik[node] = ratio
        cpts = {
            n: torch.as_tensor(t, dtype=torch.float64, device=self.device)
            for n, t in self.learned_cpts().items()
        }
        loglik = {k: v.double() for k, v in loglik.items()}
        # Pyro's enumeration drops size-1 dims, so a plate of size 1 is unknown to its contraction
        # (compute_marginals raises KeyError): one row is padded to two identical rows.
        rows = max(batch, 2)
        labels = {k: v.expand(rows) for k, v in labels.items()}
        loglik = {k: v.expand(rows, -1) for k, v in loglik.items()}

        def discrete_model():
            with pyro.plate("data", rows, dim=-1):
                self._dag_sites(cpts, labels, frozenset(), evidence_loglik=loglik)

        def empty_guide():
            pass

        marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(
            discrete_model, empty_guide
        )
        out = {}
        for node in self.dag.hidden_nodes:
            support = torch.arange(self.cards[node], device=self.device).reshape(-1, 1)
            probs = marginals[node].log_prob(support).exp().T[:batch]
            out[node] = probs.contiguous().float()  # [B, card]
        return out

    def as_generator(self) -> CausalGenerator:
        """A Generator over the extended latent ``u = [z ; one-hots of rendered nodes]``."""
        return CausalGenerator(self)

    # ------------------------------------------------------- what the trainer asks (TrainableVAE)
    @property
    def label_dag(self) -> CausalDAG:
        """The model's DAG: a dataset must hold a label column for each of its label nodes."""
        return self.dag

    def set_data_size(self, n: int) -> None:
        """N, which scales the global CPT sites (``learn_cpts``) so the minibatch ELBO is unbiased."""
        self.data_size = n

    def collapsed_log_p_labels(self, labels: Mapping[str, object]) -> torch.Tensor | None:
        """:meth:`log_p_labels` with fixed CPTs; None with ``learn_cpts`` (the label sites then
        hold parameters, so they cannot become a constant)."""
        return None if self.learn_cpts else self.log_p_labels(labels)

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` images ``[n, C, H, W]``: rendered nodes drawn from the DAG, z from the prior
        (:func:`causalscene.generate.sample_images` without evidence or ``do``)."""
        from causalscene.generate import sample_images

        return sample_images(self, n=n, seed=seed)[0]

    def run_files(self) -> dict[str, object]:
        """``model.json`` and ``dag.json`` (the DAG, ``to_dict`` form)."""
        return {"model.json": self.config(), "dag.json": self.dag.to_dict()}


class CausalGenerator(nn.Module):
    """The Generator view of a :class:`CausalVAE`, over ``u = [z ; one-hot(rendered nodes)]``.

    ``forward(u) == decode(u)`` → images ``[B, C, H, W]`` in [0, 1] (the one-hot part may be soft);
    ``encode(x)`` → ``[encoder mean ; q(node | x) probabilities]``; ``sample_latents(n)`` draws
    ``z ~ N(0, I)`` and the rendered nodes from the DAG (ancestral sampling).
    """

    def __init__(self, vae: CausalVAE):
        super().__init__()
        self.vae = vae
        self.latent_dim = vae.latent_dim + vae.cond_dim
        self.image_size = vae.image_size
        # names of the u coordinates: z0.. then node=state
        self.latent_names = [f"z{i}" for i in range(vae.latent_dim)] + [
            f"{n}={s}" for n in vae.rendered for s in vae.dag.states(n)
        ]

    @property
    def decoder(self) -> Decoder:
        return self.vae.decoder  # type: ignore[return-value]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.decode(u)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        return self.vae.likelihood.mean(self.vae.decoder(u))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = to_float_images(x).to(self.vae.device)
        probs = self.vae._onehot(self.vae.classify(x), x.dtype)
        loc = self.vae.encoder(x, probs)[0]
        return torch.cat([loc, probs], dim=-1)

    def sample_latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        generator = seeded_generator(seed)
        z = torch.randn(n, self.vae.latent_dim, generator=generator)
        rng = np.random.default_rng(None if seed is None else int(seed))
        codes = self.vae.query_dag().sample(n, seed=rng)
        onehot = self.vae._onehot(
            {k: torch.as_tensor(codes[k]) for k in self.vae.rendered}, z.dtype
        )
        return torch.cat([z, onehot], -1).to(self.vae.device)


def _full(t: torch.Tensor) -> torch.Tensor:
    """Half-precision (autocast) activations → float32 for log-densities; others unchanged."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))
