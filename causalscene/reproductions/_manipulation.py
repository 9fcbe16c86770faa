"""``cage-manipulation``: CAGE's controllable generation, judged without annotators.

Bose, Monti & Grover (TMLR 2022), section 4.1 / Table 2, show annotators pairs of manipulated
images: in *same source* pairs one source image is manipulated by an intervention on the cause
and by one on the effect, and the cause's manipulation looks more realistic; in *same
destination* pairs the same target attribute configuration is reached by changing the cause
(from one source) and by changing the effect (from another), and there changing the effect looks
more realistic. (The paper's own text of section 4.1 could not be read here; these definitions
follow the issue's wording of it.)

Here, on the faces DAG, for every edge c → e whose latent probes are reliable (CAGE's held-out
check), with sources drawn from CAGE's k prior latents and their attributes read by the latent
probes (m = 1[φ_m(z) > ½]):

* same source: every source z is moved along ĥ_c and along ĥ_e (eq. 4, :func:`counterfactual_latents`
  with the config's α and mode; the world opposite the factual one), target configurations
  (1 − c, e) and (c, 1 − e);
* same destination: for every target (c*, e*) as many sources reading (1 − c*, e*) moved along
  ĥ_c as sources reading (c*, 1 − e*) moved along ĥ_e: both sets have the same targets.

Each manipulated (decoded) set is judged by (a) the Fréchet distance d² (:mod:`causalscene.quality`,
features of a net trained on the renderer's factorial design) to as many fresh procgen faces drawn
from the DAG (observational) given each image's target configuration; (b) a real-vs-generated
critic (a small CNN trained, on a seed of its own, to tell the dataset's faces from the VAE's own
decoded prior samples — never from manipulated ones), its mean P(real); (c) the factorial image
probe ψ's accuracy on the target configuration.

``holds`` (fixed before any result was seen): in a strict majority of the reliably probed edges,
same-source do(cause) has the lower d² than same-source do(effect) AND same-destination
do(effect) the lower d² than same-destination do(cause). An edge with a set of fewer than
:data:`MIN_IMAGES` images has no d² and counts against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from causalscene.datasets import write_npz
from causalscene.reproductions._base import Context, Measured
from causalscene.tensors import to_uint8_images

if TYPE_CHECKING:
    from causalscene.probes import ImageProbe, LatentProbe
    from causalscene.quality import FeatureNetwork
    from causalscene.reproductions._vae import TrainedVAE

#: a manipulated set needs at least this many images for its Fréchet distance
MIN_IMAGES = 10
#: mixed into the seeds of the critic and of the real reference faces (streams of their own)
CRITIC_SALT = 0x63726974
REAL_SALT = 0x7265616C
#: the four target configurations (c*, e*)
CONFIGS = ((0, 0), (0, 1), (1, 0), (1, 1))


@dataclass
class ManipulatedSet:
    """One manipulated set: moved latents ``z: [n, D]`` and target codes ``[n]`` of c and e."""

    z: torch.Tensor
    target_c: np.ndarray
    target_e: np.ndarray


@dataclass
class Judges:
    """What judges a manipulated set: features, critic, ψ, and the real faces' renderer."""

    network: FeatureNetwork
    critic: ImageProbe
    psi: ImageProbe
    image_size: int


def flipped(
    z: torch.Tensor, probe: LatentProbe, attribute: str, alpha: float, mode: str
) -> tuple[torch.Tensor, np.ndarray]:
    """``(z moved [n, D], factual codes [n])``: each unit in the counterfactual world opposite
    its factual one, do(m = 1 − m(z)) by eq. 4 (:func:`~causalscene.cage.counterfactual_latents`)."""
    from causalscene.cage import counterfactual_latents

    cf = counterfactual_latents(z, probe, attribute, alpha, mode)
    moved = torch.where(cf.treated[:, None] == 1, cf.z_do0, cf.z_do1)
    return moved, cf.treated.cpu().numpy()


def same_source(
    z: torch.Tensor, probe: LatentProbe, c: str, e: str, alpha: float, mode: str
) -> dict[str, ManipulatedSet]:
    """Every source in ``z`` moved by do(c flipped) and by do(e flipped)."""
    moved_c, rc = flipped(z, probe, c, alpha, mode)
    moved_e, re = flipped(z, probe, e, alpha, mode)
    return {
        "do_cause": ManipulatedSet(moved_c, 1 - rc, re),
        "do_effect": ManipulatedSet(moved_e, rc, 1 - re),
    }


def same_destination(
    z: torch.Tensor, probe: LatentProbe, c: str, e: str, alpha: float, mode: str, cap: int
) -> tuple[dict[str, ManipulatedSet], dict[str, int]]:
    """Per target (c*, e*): the first k sources reading (1 − c*, e*) moved by do(c = c*) and the
    first k reading (c*, 1 − e*) moved by do(e = e*), k = min(both counts, ``cap``); and k per
    target (``"c*,e*"``)."""
    moved_c, rc = flipped(z, probe, c, alpha, mode)
    moved_e, re = flipped(z, probe, e, alpha, mode)
    pick_c: list[np.ndarray] = []
    pick_e: list[np.ndarray] = []
    counts: dict[str, int] = {}
    for tc, te in CONFIGS:
        via_c = np.flatnonzero((rc == 1 - tc) & (re == te))
        via_e = np.flatnonzero((rc == tc) & (re == 1 - te))
        k = min(len(via_c), len(via_e), cap)
        pick_c.append(via_c[:k])
        pick_e.append(via_e[:k])
        counts[f"{tc},{te}"] = k
    ic, ie = np.concatenate(pick_c), np.concatenate(pick_e)
    index = torch.as_tensor
    sets = {
        "do_cause": ManipulatedSet(moved_c[index(ic, device=z.device)], 1 - rc[ic], re[ic]),
        "do_effect": ManipulatedSet(moved_e[index(ie, device=z.device)], rc[ie], 1 - re[ie]),
    }
    return sets, counts


@torch.no_grad()
def decoded(model: Any, z: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """uint8 ``[n, H, W, C]`` images of latents ``z: [n, D]`` (the decoder's mean)."""
    device = next(model.parameters()).device
    parts = [
        model.decode(z[s : s + batch_size].to(device).float()) for s in range(0, len(z), batch_size)
    ]
    return to_uint8_images(torch.cat(parts) if parts else torch.zeros(0, 3, 1, 1))


def real_faces(
    c: str, e: str, target_c: np.ndarray, target_e: np.ndarray, size: int, seed: Any
) -> np.ndarray:
    """As many fresh procgen faces as targets, each drawn from the faces DAG given its target
    (c, e) configuration (observational, :meth:`CausalDAG.sample` with evidence), rendered."""
    from causalscene import procgen

    dag, rng = procgen.load_dag("faces"), np.random.default_rng(seed)
    parts = []
    for tc, te in CONFIGS:
        k = int(((target_c == tc) & (target_e == te)).sum())
        if k:
            labels = dag.sample(k, evidence={c: tc, e: te}, seed=rng)
            rendered = {n: labels[n] for n in dag.rendered_nodes}
            parts.append(procgen.generator("faces").render(rendered, size, rng)[0])
    return np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.uint8)


def train_critic(
    real: np.ndarray, generated: np.ndarray, epochs: int, seed: int, device: str
) -> tuple[ImageProbe, float]:
    """A small CNN (:class:`ImageProbe`, one head ``real``) trained on 80% of ``real`` (label 1)
    and ``generated`` (label 0), uint8 NHWC; and its accuracy on the other 20%."""
    from causalscene.probes import ImageProbe

    images = np.concatenate([real, generated])
    labels = np.concatenate([np.ones(len(real), np.int64), np.zeros(len(generated), np.int64)])
    rng = np.random.default_rng([seed, CRITIC_SALT])
    test = rng.random(len(images)) < 0.2
    critic = ImageProbe({"real": 2}, images.shape[1], images.shape[-1])
    critic.fit(images[~test], {"real": labels[~test]}, epochs=epochs, seed=seed, device=device)
    return critic, critic.accuracy(images[test], {"real": labels[test]})["real"]


def p_real(critic: ImageProbe, images: np.ndarray) -> np.ndarray:
    """The critic's P(real) ``[n]`` of uint8 images."""
    return critic.predict_proba(images)["real"][:, 1]


def _critic(context: Context, trained: TrainedVAE) -> tuple[ImageProbe, dict[str, Any]]:
    """The critic of the dataset's faces against as many of the VAE's decoded prior samples
    (latents drawn with a seed of its own), and how it did."""
    n = min(len(trained.images), context.pick(256, 2_000, 5_000))
    seed = int(np.random.default_rng([context.seed, CRITIC_SALT]).integers(2**31))
    model: Any = trained.model
    generated = decoded(model, model.sample_latents(n, seed=seed))
    epochs = context.pick(1, 4, 4)
    critic, accuracy = train_critic(trained.images[:n], generated, epochs, seed, context.device)
    return critic, {"heldout_accuracy": accuracy, "images_per_class": n, "epochs": epochs}


def _judges(context: Context, trained: TrainedVAE) -> tuple[Judges, dict[str, Any]]:
    """The Fréchet features, the critic and ψ (besserve2020's factorial probe), and their
    reports."""
    from causalscene.quality import feature_network, renderer_source
    from causalscene.reproductions.besserve2020 import _attribute_probe

    source = renderer_source(trained.data)
    if source is None:
        raise ValueError(f"{trained.data}: not a procgen faces folder")
    size = int(trained.images.shape[1])
    network = feature_network(
        source,
        size,
        n_images=context.pick(256, 3_000, 3_000),
        epochs=context.pick(1, 4, 4),
        seed=context.seed,
        cache=context.out / "frechet_features.pt",
        device=context.device,
    )
    critic, critic_report = _critic(context, trained)
    psi, psi_accuracy = _attribute_probe(context, trained)
    report = {
        "features": network.name,
        "critic": critic_report,
        "psi_heldout_accuracy_on_real_faces": psi_accuracy,
    }
    return Judges(network, critic, psi, size), report


def judge(
    judges: Judges,
    model: Any,
    s: ManipulatedSet,
    c: str,
    e: str,
    seed: Any,
    reals: dict[bytes, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One manipulated set's d² to real faces of its targets, mean P(real) and ψ's target
    accuracy; and the pieces they came from (features, P(real), targets, ψ's reads).

    ``reals``: the real faces' features already rendered with this ``seed``, by their targets;
    a set with the same targets (the two routes of a same-destination pair) reuses them."""
    from causalscene.quality import image_features
    from causalscene.reproductions.besserve2020 import _frechet

    images = decoded(model, s.z)
    pieces = {"target_c": s.target_c, "target_e": s.target_e}
    entry: dict[str, Any] = {"images": len(images), "frechet": None, "p_real": None}
    entry["targets"] = {
        f"{tc},{te}": int(((s.target_c == tc) & (s.target_e == te)).sum()) for tc, te in CONFIGS
    }
    entry["target_accuracy"] = {"cause": None, "effect": None, "both": None}
    if not len(images):
        return entry, pieces
    pieces["features"] = image_features(judges.network, images)
    reals = {} if reals is None else reals
    key = s.target_c.tobytes() + b"|" + s.target_e.tobytes()
    if key not in reals:
        real = real_faces(c, e, s.target_c, s.target_e, judges.image_size, seed)
        reals[key] = image_features(judges.network, real)
    pieces["real_features"] = reals[key]
    pieces["p_real"] = p_real(judges.critic, images)
    reads = judges.psi.predict(images)
    pieces["psi_c"], pieces["psi_e"] = reads[c], reads[e]
    if len(images) >= MIN_IMAGES:
        entry["frechet"] = _frechet(pieces["features"], pieces["real_features"])
    entry["p_real"] = float(pieces["p_real"].mean())
    right_c, right_e = reads[c] == s.target_c, reads[e] == s.target_e
    entry["target_accuracy"] = {
        "cause": float(right_c.mean()),
        "effect": float(right_e.mean()),
        "both": float((right_c & right_e).mean()),
    }
    return entry, pieces


def lower(a: dict[str, Any], b: dict[str, Any], key: str = "frechet") -> bool:
    """Set ``a`` has the lower d² than ``b`` (False when either has none)."""
    return a[key] is not None and b[key] is not None and a[key] < b[key]


def _edge(
    context: Context,
    judges: Judges,
    model: Any,
    latents: torch.Tensor,
    probe: LatentProbe,
    edge: tuple[int, str, str],
    saved: dict[str, Any],
) -> dict[str, Any]:
    """Both protocols for edge ``(index, c, e)``: every set judged, its pieces into ``saved``
    under ``c->e/protocol/manipulation/piece``."""
    from causalscene.reproductions.bose2022 import _cage_config

    index, c, e = edge
    config = _cage_config(context)
    n = min(len(latents), context.pick(200, 2_000, 5_000))
    protocols = {
        "same_source": (same_source(latents[:n], probe, c, e, config.alpha, config.mode), None),
        "same_destination": same_destination(
            latents, probe, c, e, config.alpha, config.mode, cap=n // 4
        ),
    }
    out: dict[str, Any] = {}
    for p, (name, (sets, counts)) in enumerate(protocols.items()):
        seed = [context.seed, REAL_SALT, index, p]  # same seed: same-destination sets share reals
        entry: dict[str, Any] = {} if counts is None else {"sources_per_target": counts}
        reals: dict[bytes, np.ndarray] = {}
        for kind, s in sets.items():
            entry[kind], pieces = judge(judges, model, s, c, e, seed, reals)
            saved.update({f"{c}->{e}/{name}/{kind}/{k}": v for k, v in pieces.items()})
        out[name] = entry
    ss, sd = out["same_source"], out["same_destination"]
    out["same_source_cause_lower_frechet"] = lower(ss["do_cause"], ss["do_effect"])
    out["same_destination_effect_lower_frechet"] = lower(sd["do_effect"], sd["do_cause"])
    out["as_claimed"] = (
        out["same_source_cause_lower_frechet"] and out["same_destination_effect_lower_frechet"]
    )
    out["same_source_cause_higher_p_real"] = lower(ss["do_effect"], ss["do_cause"], "p_real")
    out["same_destination_effect_higher_p_real"] = lower(sd["do_cause"], sd["do_effect"], "p_real")
    return out


def _figure(
    context: Context,
    model: Any,
    latents: torch.Tensor,
    probe: LatentProbe,
    edges: list[tuple[str, str]],
    examples: int = 3,
) -> None:
    """``manipulations.png``: per reliably probed edge, ``examples`` same-source triples —
    the source as decoded | moved along the cause's direction | along the effect's."""
    from causalscene.plots import save_image_grid
    from causalscene.reproductions.bose2022 import _cage_config

    config = _cage_config(context)
    z = latents[:examples]
    images, titles = [], []
    for c, e in edges:
        sets = same_source(z, probe, c, e, config.alpha, config.mode)
        triples = zip(decoded(model, z), *(decoded(model, s.z) for s in sets.values()))
        for source, by_cause, by_effect in triples:
            images += [source, by_cause, by_effect]
            titles += [f"{c}->{e}\nsource", f"do({c})", f"do({e})"]
    save_image_grid(
        np.stack(images),
        context.out / "manipulations.png",
        ncol=3 * examples,
        titles=titles,
        suptitle="same source: the decoded source | moved along the cause | along the effect",
    )


def summary(per_edge: dict[str, dict[str, Any]]) -> dict[str, int]:
    """How many reliably probed edges show each comparison."""
    keys = (
        "same_source_cause_lower_frechet",
        "same_destination_effect_lower_frechet",
        "as_claimed",
        "same_source_cause_higher_p_real",
        "same_destination_effect_higher_p_real",
    )
    return {"reliable_edges": len(per_edge)} | {
        k: sum(bool(entry[k]) for entry in per_edge.values()) for k in keys
    }


def holds_of(counts: dict[str, int]) -> bool:
    """A strict majority of the reliably probed edges as claimed (both comparisons)."""
    return counts["reliable_edges"] > 0 and 2 * counts["as_claimed"] > counts["reliable_edges"]


def reproduce_cage_manipulation(context: Context) -> Measured:
    """The faces VAE of ``cage-faces`` (same presets, no figures), CAGE on the faces DAG's edges
    between binary attributes, then both protocols on each reliably probed edge (module
    docstring); ``manipulated.npz`` holds every set's pieces."""
    from causalscene.dag import CausalDAG
    from causalscene.reproductions.bose2022 import faces_vae_cage

    dag = CausalDAG.shipped("faces")
    edges = [(c, e) for c, e in dag.edges if dag.cardinality(c) == dag.cardinality(e) == 2]
    trained, analysis = faces_vae_cage(context, ",".join(f"{c}:{e}" for c, e in edges))
    result = analysis.result
    reliable = [(p.cause, p.effect) for p in result.pairs if p.reliable]
    judges, report = _judges(context, trained)
    saved: dict[str, Any] = {}
    per_edge = {
        f"{c}->{e}": _edge(
            context, judges, trained.model, result.latents, result.probe, (i, c, e), saved
        )
        for i, (c, e) in enumerate(reliable)
    }
    write_npz(context.out / "manipulated.npz", saved)
    if reliable:
        _figure(context, trained.model, result.latents, result.probe, reliable)
    counts = summary(per_edge)
    measured = {
        "edges": [f"{c}->{e}" for c, e in edges],
        "reliable_edges": list(per_edge),
        "latent_probe_accuracy": result.accuracy,
        "alpha": result.config.alpha,
        "mode": result.config.mode,
        "min_images": MIN_IMAGES,
        **report,
        "per_edge": per_edge,
        "summary": counts,
    }
    return measured, holds_of(counts)
