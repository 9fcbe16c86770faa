"""CAGE: causal directions between attributes, read off a generator's latent space.

Bose, Monti & Grover, "Controllable Generative Modeling via Causal Reasoning", TMLR 2022 (CAGE).
For a generator with latent z (Generator protocol: ``encode``, ``decode``, ``sample_latents``):

1. Encode labelled data; fit probabilistic linear probes φ_m(z) = σ(w_mᵀz + b_m) per binary
   attribute (:class:`~causalscene.probes.LatentProbe`), with held-out accuracy as the paper's
   linear-separability check.
2. Sample k latents from the prior; the factual treatment of unit i is m_i = 1[φ_m(z_i) > ½].
3. Counterfactual latents (eq. 4), ĥ_m = w_m / ‖w_m‖ the unit normal of m's boundary:
   ``mode="shift"``: z_i(do(m=1)) = z_i + α ĥ_m for units with m_i = 0 (z_i itself when m_i = 1),
   z_i(do(m=0)) = z_i − α ĥ_m for units with m_i = 1 (z_i itself when m_i = 0).
   ``mode="cross"``: the step is the unit's distance to the boundary plus α, so every unit
   crosses it (is actually treated).
4. GATE(c→e) = 1/k Σ_i [Y_e(z_i(do(c=1))) − Y_e(z_i(do(c=0)))], with the latent outcome
   Y_e = φ_e (eq. 8) or the image outcome Y_e = ψ_e(decode(·)), ψ an image classifier (eq. 9).
   τ(c, e) = |GATE(c→e)| − |GATE(e→c)|; τ > 0 supports c → e.
   ``estimator="calibrated"`` reads every outcome on one common scale instead: its logit over
   its own slope along its own normal (:func:`scaled_outcomes`), so that τ no longer follows
   which probe is sharper.
5. Significance: permutation null — shuffle the treatment's labels, refit its probe, recompute
   GATE; all refits of all attributes are one batched Newton problem. p = (1 + #{|null| ≥ |obs|})
   / (1 + P). MMD (RBF kernel, median heuristic) between p(z | m = 1) and the counterfactual
   p(z | do(m = 1)) measures how far interventions leave the factual distribution.

:func:`compare_with_dag` sets the inferred directions beside a prescribed DAG's.

Caveats (measured, see the tests): with linear probes, a small step gives
GATE(c→e) ≈ α · cos(ĥ_c, ĥ_e) · E[‖w_e‖ σ'(w_eᵀz + b_e)], and the cosine is the same both ways,
so τ compares how sharply each probe responds along the shared direction. The planted test
(like the paper's mixture toy) has a sharp effect and a noisily labelled cause, and τ > 0; a
latent space where e = 1[β(2c − 1) + z_2 > 0] with c = 1[z_1 > 0] (the effect's own noise
blurring its probe) gives τ < 0. The permutation null's refitted directions follow the encoded
data's covariance (a shuffled-label probe is w ∝ Zᵀ(y − ȳ)), so outcomes aligned with
high-variance latent directions get wide nulls.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalscene.generators import Generator
from causalscene.probes import ImageProbe, LatentProbe
from causalscene.tensors import resolve_device
from causalscene.utils import atomic_write_json, atomic_write_text

__all__ = [
    "CageConfig",
    "Counterfactuals",
    "PairResult",
    "CageResult",
    "DagComparison",
    "parse_pairs",
    "counterfactual_latents",
    "gate",
    "tau",
    "tau_sign",
    "infer_direction",
    "scaled_outcomes",
    "permutation_null",
    "mmd",
    "alpha_sweep",
    "run_cage",
    "dag_relation",
    "pair_kind",
    "direction_scores",
    "scores_caption",
    "compare_with_dag",
]

log = logging.getLogger(__name__)

MODES = ("shift", "cross")
OUTCOMES = ("latent", "image")
ESTIMATORS = ("paper", "calibrated")


@dataclass
class CageConfig:
    """Options of a CAGE analysis (the ``causalscene cage`` flags map onto these)."""

    alpha: float = 1.0  #: step size α of eq. 4 (latent units)
    mode: str = "shift"  #: "shift" (z ± α ĥ) or "cross" (step past the boundary by α)
    outcome: str = "latent"  #: "latent" (φ_e, eq. 8) or "image" (ψ_e ∘ decode, eq. 9)
    #: "paper" (outcomes as probabilities) or "calibrated" (outcomes as logits over their own
    #: slope along their own normal: :func:`scaled_outcomes`)
    estimator: str = "paper"
    num_latents: int = 10_000  #: k, latents sampled from the prior
    permutations: int = 200  #: P, shuffles of the permutation null
    null_latents: int | None = None  #: latents used by the null (default k; 512 for images)
    l2: float = 1e-3  #: ridge of the probes
    probe: str = "logistic"  #: "logistic" (batched torch) or "svm" (sklearn LinearSVC + Platt)
    holdout: float = 0.2  #: fraction of encoded data held out for the separability check
    min_accuracy: float = 0.75  #: probes below this held-out accuracy make a pair unreliable
    level: float = 0.05  #: significance level for inferred directions
    mmd_samples: int = 1000  #: points per sample in the MMD
    seed: int = 0
    device: str = "cpu"  #: auto | cpu | cuda[:K]

    def validate(self) -> None:
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got '{self.mode}'")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got '{self.outcome}'")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got '{self.estimator}'")
        if self.num_latents < 2:
            raise ValueError(f"num_latents must be >= 2, got {self.num_latents}")
        if self.permutations < 1:
            raise ValueError(f"permutations must be >= 1, got {self.permutations}")
        if self.probe not in ("logistic", "svm"):
            raise ValueError(f"probe must be 'logistic' or 'svm', got '{self.probe}'")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")


# ----------------------------------------------------------------------------- validation
def parse_pairs(
    spec: str | Sequence[Any], attributes: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """``"a:b,c:d"`` or ``[("a", "b"), "c:d"]`` → ``[("a", "b"), ("c", "d")]`` (cause candidate first).

    Raises ``ValueError`` for a malformed pair, a pair naming one attribute twice, or (with
    ``attributes``) an unknown attribute.
    """
    items = [s for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    if not items:
        raise ValueError("no pairs given")
    pairs: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            parts = [p.strip() for p in item.split(":")]
        else:
            parts = [str(p).strip() for p in item]
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"pair '{item}' is not of the form cause:effect")
        c, e = parts
        if c == e:
            raise ValueError(f"pair '{c}:{e}' names the attribute '{c}' twice")
        if attributes is not None:
            for a in (c, e):
                if a not in attributes:
                    raise ValueError(f"unknown attribute '{a}' (known: {', '.join(attributes)})")
        pairs.append((c, e))
    return pairs


def _as_tensor(
    x: Any, device: str | torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device, dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _check_alpha(alpha: float) -> None:
    if not float(alpha) > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got '{mode}'")


# ----------------------------------------------------------------------------- counterfactuals
@dataclass
class Counterfactuals:
    """Both worlds of every unit for one treatment: ``z_do1, z_do0: [K, D]``, factual ``m: [K]``."""

    z_do1: torch.Tensor
    z_do0: torch.Tensor
    treated: torch.Tensor  # factual m_i = 1[φ(z_i) > ½]
    direction: torch.Tensor  # ĥ [D]


def _steps(
    logit: torch.Tensor, w_norm: torch.Tensor, alpha: float, mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps along ĥ: z(do(1)) = z + s1 ĥ and z(do(0)) = z − s0 ĥ (eq. 4); shapes follow ``logit``.

    ``logit`` = wᵀz + b (``[..., K]``), ``w_norm`` = ‖w‖ broadcastable to it.
    """
    m = (logit > 0).to(logit.dtype)
    if mode == "shift":
        return alpha * (1 - m), alpha * m
    distance = logit / w_norm  # signed distance to the boundary
    return (1 - m) * (alpha - distance), m * (alpha + distance)


def counterfactual_latents(
    z: Any,
    probe: LatentProbe,
    treatment: str,
    alpha: float = 1.0,
    mode: str = "shift",
) -> Counterfactuals:
    """Counterfactual latents for ``do(treatment = 1)`` and ``do(treatment = 0)`` (eq. 4).

    ``mode="shift"``: units with factual m = 0 move to z + α ĥ in the do(1) world and stay at z in
    the do(0) world; units with m = 1 stay at z in the do(1) world and move to z − α ĥ in the do(0)
    world. ``mode="cross"``: the move is the distance to the boundary plus α, so every unit
    crosses it. ``z: [K, D]``.
    """
    _check_alpha(alpha)
    _check_mode(mode)
    w, b = probe.params(treatment)
    zt = _as_tensor(z, w.device, w.dtype)
    logit = zt @ w + b
    s1, s0 = _steps(logit, w.norm(), float(alpha), mode)
    h = w / w.norm().clamp_min(1e-12)
    return Counterfactuals(
        z_do1=zt + s1[:, None] * h,
        z_do0=zt - s0[:, None] * h,
        treated=(logit > 0).long(),
        direction=h,
    )


OutcomeFn = Callable[[torch.Tensor], torch.Tensor]


def image_outcome(
    generator: Generator, image_probe: ImageProbe, outcome: str, batch_size: int = 256
) -> OutcomeFn:
    """Y_e(z) = ψ_e(decode(z)) = P(e = 1 | decoded image) (eq. 9), decoded and read in batches
    of ``batch_size`` latents."""
    if outcome not in image_probe.cards:
        raise ValueError(
            f"image probe has no head for '{outcome}' (heads: {', '.join(image_probe.cards)})"
        )
    if image_probe.cards[outcome] != 2:
        raise ValueError(f"attribute '{outcome}' is not binary in the image probe")

    @torch.no_grad()
    def fn(z: torch.Tensor) -> torch.Tensor:
        params = list(generator.parameters()) if hasattr(generator, "parameters") else []
        device = params[0].device if params else z.device
        out = []
        for start in range(0, z.shape[0], batch_size):
            images = generator.decode(z[start : start + batch_size].to(device).float())
            out.append(
                image_probe.predict_proba_tensor(images, batch_size)[outcome][:, 1].to(
                    z.device, z.dtype
                )
            )
        return torch.cat(out) if out else z.new_zeros(0)

    return fn


def gate(
    z: Any,
    probe: LatentProbe,
    cause: str,
    effect: str,
    alpha: float = 1.0,
    mode: str = "shift",
    outcome_fn: OutcomeFn | None = None,
) -> float:
    """GATE(cause → effect) = 1/k Σ_i [Y(z_i(do(c=1))) − Y(z_i(do(c=0)))] (eqs. 8 and 9).

    With ``outcome_fn=None`` the outcome is the latent probe Y = φ_effect (eq. 8); otherwise
    ``outcome_fn(z [K, D]) -> [K]`` (e.g. :func:`image_outcome`, eq. 9).
    """
    if cause == effect:
        raise ValueError(f"pair '{cause}:{effect}' names the attribute '{cause}' twice")
    probe.params(effect)  # validates the name
    cf = counterfactual_latents(z, probe, cause, alpha, mode)
    if outcome_fn is None:
        y1, y0 = probe.predict_proba(cf.z_do1, effect), probe.predict_proba(cf.z_do0, effect)
    else:
        y1, y0 = outcome_fn(cf.z_do1), outcome_fn(cf.z_do0)
    return float((y1 - y0).mean())


def scaled_outcomes(
    z: torch.Tensor,
    probe: LatentProbe,
    attributes: Sequence[str],
    base: Mapping[str, OutcomeFn] | None = None,
    delta: float = 0.1,
) -> dict[str, OutcomeFn]:
    """The calibrated estimator's outcomes, on one common scale: Y_m(z) = logit P(m = 1 | z) / κ_m,
    κ_m the mean slope of that logit along m's own normal ĥ_m (central difference ±``delta`` over
    ``z: [K, D]``), so a unit latent step along ĥ_m moves Y_m by one on average, whichever
    attribute's probe is sharper.

    ``base=None``: the latent probes, where Y_m = (w_mᵀz + b_m)/‖w_m‖ is the signed distance to
    m's boundary; with it GATE(c→e) = GATE(e→c) = α cos(ĥ_c, ĥ_e) exactly in shift mode (two
    hyperplanes carry no direction). Else ``base[m](z)`` (ψ_m ∘ decode, eq. 9) read as a logit."""
    out: dict[str, OutcomeFn] = {}
    for m in attributes:
        logit = _logit_fn(probe, m, base)
        h = probe.normal(m).to(z.dtype)
        kappa = float((logit(z + delta * h) - logit(z - delta * h)).mean()) / (2 * delta)
        if not abs(kappa) > 1e-9:
            raise ValueError(f"attribute '{m}': its outcome does not respond along its own normal")
        out[m] = _scaled(logit, kappa)
    return out


def _logit_fn(probe: LatentProbe, m: str, base: Mapping[str, OutcomeFn] | None) -> OutcomeFn:
    if base is None:
        return lambda u: probe.logits(u, m)
    fn = base[m]

    def logit(u: torch.Tensor) -> torch.Tensor:
        p = fn(u).clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p)

    return logit


def _scaled(logit: OutcomeFn, kappa: float) -> OutcomeFn:
    return lambda u: logit(u) / kappa


def tau(gate_ce: float, gate_ec: float) -> float:
    """τ(c, e) = |GATE(c→e)| − |GATE(e→c)| (CAGE, section 3.2); τ > 0 supports c → e."""
    return abs(float(gate_ce)) - abs(float(gate_ec))


#: |τ| at most this share of the larger |GATE| is a tie: the GATEs are float32 means, so a
#: difference below their rounding carries no sign (the calibrated latent outcome in shift mode
#: gives GATE(c→e) = GATE(e→c) exactly in theory, and τ = ±1e-9 in floats)
TAU_TIE = 1e-6


def tau_sign(gate_ce: float, gate_ec: float) -> int:
    """The sign of τ (+1 supports c → e, −1 e → c), 0 for a tie within :data:`TAU_TIE`."""
    t = tau(gate_ce, gate_ec)
    if abs(t) <= TAU_TIE * max(abs(float(gate_ce)), abs(float(gate_ec))):
        return 0
    return 1 if t > 0 else -1


# ----------------------------------------------------------------------------- null
@dataclass
class NullDistribution:
    """Null GATEs per directed pair, ``{(c, e): [P]}``, and the refitted probes ``{m: (w [P, D], b [P])}``."""

    gates: dict[tuple[str, str], np.ndarray]
    probes: dict[str, tuple[torch.Tensor, torch.Tensor]]


def permutation_null(
    z_train: Any,
    labels: Mapping[str, Any],
    z: Any,
    probe: LatentProbe,
    pairs: Sequence[tuple[str, str]],
    permutations: int = 200,
    alpha: float = 1.0,
    mode: str = "shift",
    seed: int = 0,
    outcome_fns: Mapping[str, OutcomeFn] | None = None,
    only: Sequence[tuple[str, str]] | None = None,
) -> NullDistribution:
    """Permutation null of GATE for every directed pair in ``pairs`` (and its reverse).

    For each treatment m and permutation π, the labels of m on the encoded data are shuffled and
    φ_m is refitted; GATE^π(m→e) is then computed with the refitted direction ĥ_m^π and the
    unchanged outcome (φ_e, or ``outcome_fns[e]`` for the image outcome). All ``|treatments| × P``
    refits are ONE call of :func:`~causalscene.probes.fit_logistic_batched` on a ``[A·P, D]``
    weight tensor, on the probe's device.

    ``only``: the nulls of these directed pairs alone (of those above), refitting only their
    treatments. The shuffles are drawn as for all of them, so each null is the one the whole call
    gives, up to the refits' stopping point (the batched solve runs until its slowest row is
    done).
    """
    _check_alpha(alpha)
    _check_mode(mode)
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    device = probe.weight.device if probe.weight is not None else torch.device("cpu")
    dtype = probe.weight.dtype if probe.weight is not None else torch.float32
    zt = _as_tensor(z_train, device, dtype)
    zk = _as_tensor(z, device, dtype)
    directed = sorted({p for c, e in pairs for p in ((c, e), (e, c))})
    treatments = sorted({c for c, _ in directed})
    y, w = _shuffled_targets(labels, treatments, permutations, seed, device, dtype)
    wanted = directed if only is None else sorted(set(only))
    stray = [p for p in wanted if p not in directed]
    if stray:
        raise ValueError(f"only= names a pair outside pairs (or their reverse): {stray[0]}")
    needed = sorted({c for c, _ in wanted})
    if needed != treatments:  # the needed treatments' blocks of shuffles
        keep = [i for i, m in enumerate(treatments) if m in needed]
        y, w = (t.view(len(treatments), permutations, -1)[keep].flatten(0, 1) for t in (y, w))
    # One batched Newton solve for all refits (``probe.method == "svm"`` loops over sklearn instead).
    w_all, b_all = probe._solve(zt, y, w)
    refits = {
        m: (
            w_all[i * permutations : (i + 1) * permutations],
            b_all[i * permutations : (i + 1) * permutations],
        )
        for i, m in enumerate(needed)
    }
    gates: dict[tuple[str, str], np.ndarray] = {}
    for c in needed:
        effects = [e for cc, e in wanted if cc == c]
        latent_effects = [e for e in effects if outcome_fns is None or e not in outcome_fns]
        if latent_effects:
            values = _latent_null_gates(zk, probe, refits[c], latent_effects, alpha, mode)
            for j, e in enumerate(latent_effects):
                gates[(c, e)] = values[:, j]
        for e in effects:
            if e not in latent_effects:
                fn = outcome_fns[e]  # type: ignore[index]
                gates[(c, e)] = _image_null_gates(zk, refits[c], fn, alpha, mode)
    return NullDistribution(gates=gates, probes=refits)


def _shuffled_targets(
    labels: Mapping[str, Any],
    treatments: Sequence[str],
    permutations: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets ``[A·P, N]`` (each treatment's labels shuffled among its labelled units, P times
    in order, from one ``default_rng(seed)``) and their weights (0 for a missing label)."""
    rng = np.random.default_rng(seed)
    ys, ws = [], []
    for m in treatments:
        codes = np.asarray(labels[m]).reshape(-1).astype(np.int64)
        valid = np.flatnonzero(codes >= 0)
        for _ in range(permutations):
            shuffled = codes.copy()
            shuffled[valid] = codes[rng.permutation(valid)]
            ys.append(np.clip(shuffled, 0, 1))
            ws.append(codes >= 0)
    y = torch.as_tensor(np.stack(ys), device=device, dtype=dtype)
    w = torch.as_tensor(np.stack(ws), device=device, dtype=dtype)
    return y, w


def _latent_null_gates(
    zk: torch.Tensor,
    probe: LatentProbe,
    refit: tuple[torch.Tensor, torch.Tensor],
    effects: Sequence[str],
    alpha: float,
    mode: str,
) -> np.ndarray:
    """Null GATEs ``[P, E]`` of one treatment's P refitted directions on the latent outcomes
    φ_e of ``effects``, all at once: ``[K, P]`` steps, ``[P, E]`` slopes, K chunked."""
    w_t, b_t = refit
    w_e = torch.stack([probe.params(e)[0] for e in effects])  # [E, D]
    b_e = torch.stack([probe.params(e)[1] for e in effects])  # [E]
    norm = w_t.norm(dim=1).clamp_min(1e-12)
    s1, s0 = _steps(zk @ w_t.T + b_t, norm, float(alpha), mode)  # [K, P]
    slope = (w_t @ w_e.T) / norm[:, None]  # [P, E]
    logit_e = (zk @ w_e.T + b_e)[:, None, :]  # [K, 1, E]
    values = torch.zeros(len(w_t), len(effects), dtype=zk.dtype, device=zk.device)
    for start in range(0, len(zk), 2048):  # chunk K to bound memory at K·P·E
        sl = slice(start, start + 2048)
        y1 = torch.sigmoid(logit_e[sl] + s1[sl, :, None] * slope)
        y0 = torch.sigmoid(logit_e[sl] - s0[sl, :, None] * slope)
        values += (y1 - y0).sum(0)
    return (values / len(zk)).cpu().numpy()


def _image_null_gates(
    zk: torch.Tensor,
    refit: tuple[torch.Tensor, torch.Tensor],
    fn: OutcomeFn,
    alpha: float,
    mode: str,
    rows: int = 16_384,
) -> np.ndarray:
    """Null GATEs ``[P]`` of one treatment's refitted directions on an outcome function. Each
    permutation needs its own decoded images; the counterfactual latents of several permutations
    go through ``fn`` in one call (about ``rows`` latents a call; ``fn`` reads each row on its
    own, so the grouping changes no value), then each permutation's mean is taken over its K."""
    w_t, b_t = refit
    k = len(zk)
    norm = w_t.norm(dim=1).clamp_min(1e-12)  # [P]
    s1, s0 = _steps(zk @ w_t.T + b_t, norm, float(alpha), mode)  # [K, P]
    h = w_t / norm[:, None]  # [P, D]
    per_call = max(1, rows // max(k, 1))
    values = []
    for start in range(0, len(w_t), per_call):
        sl = slice(start, start + per_call)
        moved1 = zk[None] + s1[:, sl].T[:, :, None] * h[sl, None, :]  # [p, K, D]
        moved0 = zk[None] - s0[:, sl].T[:, :, None] * h[sl, None, :]
        y = fn(moved1.reshape(-1, zk.shape[1])) - fn(moved0.reshape(-1, zk.shape[1]))
        values.append(y.reshape(-1, k).mean(1))
    return torch.cat(values).cpu().numpy().astype(float) if values else np.zeros(0)


def p_value(observed: float, null: np.ndarray) -> float:
    """Two-sided permutation p-value with the +1 correction: (1 + #{|null| ≥ |obs|}) / (1 + P)."""
    null = np.asarray(null, dtype=float)
    return float((1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (1 + null.size))


# ----------------------------------------------------------------------------- MMD
def mmd(
    x: Any, y: Any, bandwidth: float | None = None, max_samples: int | None = None, seed: int = 0
) -> float:
    """Squared MMD with an RBF kernel (biased V-statistic, so exactly 0 for identical samples).

    MMD²(X, Y) = mean k(x, x') + mean k(y, y') − 2 mean k(x, y), k(a, b) = exp(−‖a − b‖² / (2σ²)),
    σ² = half the median squared distance of the pooled sample (median heuristic; Gretton et al.,
    JMLR 2012) unless ``bandwidth`` (σ) is given. ``x: [N, D]``, ``y: [M, D]``.
    """
    xt = (
        _as_tensor(x, "cpu", torch.float64)
        if not isinstance(x, torch.Tensor)
        else x.detach().double()
    )
    yt = (
        _as_tensor(y, xt.device, torch.float64)
        if not isinstance(y, torch.Tensor)
        else y.detach().double().to(xt.device)
    )
    if xt.ndim != 2 or yt.ndim != 2 or xt.shape[1] != yt.shape[1]:
        raise ValueError(
            f"mmd needs [N, D] and [M, D] samples, got {tuple(xt.shape)} and {tuple(yt.shape)}"
        )
    if len(xt) < 2 or len(yt) < 2:
        raise ValueError("mmd needs at least 2 points in each sample")
    if max_samples is not None:
        gen = torch.Generator().manual_seed(seed)
        if len(xt) > max_samples:
            xt = xt[torch.randperm(len(xt), generator=gen)[:max_samples].to(xt.device)]
        if len(yt) > max_samples:
            yt = yt[torch.randperm(len(yt), generator=gen)[:max_samples].to(yt.device)]
    pooled = torch.cat([xt, yt])
    d2 = torch.cdist(pooled, pooled).pow(2)
    if bandwidth is None:
        off = d2[~torch.eye(len(pooled), dtype=torch.bool, device=d2.device)]
        med = off.median()
        sigma2 = float(med) / 2 if float(med) > 0 else 1.0
    else:
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        sigma2 = float(bandwidth) ** 2
    k = torch.exp(-d2 / (2 * sigma2))
    n = len(xt)
    value = k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()
    return max(float(value), 0.0)


# ----------------------------------------------------------------------------- results
@dataclass
class PairResult:
    """CAGE's answer for one attribute pair (c, e)."""

    cause: str
    effect: str
    gate_ce: float
    gate_ec: float
    tau: float
    p_ce: float
    p_ec: float
    p_tau: float
    mmd_c: float
    mmd_e: float
    accuracy_c: float
    accuracy_e: float
    reliable: bool
    inferred: str  # "c->e", "e->c" or "none"
    null_ce: list[float] = field(default_factory=list, repr=False)
    null_ec: list[float] = field(default_factory=list, repr=False)
    null_tau: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("null_ce", "null_ec", "null_tau"):
            out.pop(key)
        return out


@dataclass
class CageResult:
    """Every pair's :class:`PairResult`, with what produced them: the fitted latent probes φ and
    the k prior latents ``[K, D]`` (on the probe's device) that the GATEs averaged over."""

    pairs: list[PairResult]
    config: CageConfig
    accuracy: dict[str, float]  #: held-out probe accuracy per attribute
    probe: LatentProbe = field(repr=False)
    latents: torch.Tensor = field(repr=False)
    sweep: dict[str, Any] = field(default_factory=dict)  #: :func:`alpha_sweep`, when run
    #: the outcome functions the GATEs were measured with (image outcome and/or the calibrated
    #: estimator's scale); None: the latent probes' probabilities (eq. 8)
    outcome_fns: Mapping[str, OutcomeFn] | None = field(default=None, repr=False)

    def pair(self, cause: str, effect: str) -> PairResult:
        for p in self.pairs:
            if (p.cause, p.effect) == (cause, effect):
                return p
        raise ValueError(f"no result for pair '{cause}:{effect}'")

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "accuracy": self.accuracy,
            "pairs": [p.summary() for p in self.pairs],
            "sweep": self.sweep,
        }


def infer_direction(gate_ce: float, gate_ec: float, p_ce: float, p_ec: float, level: float) -> str:
    """Direction from the sign of τ (:func:`tau_sign`: a tie has none), kept only when the larger
    GATE is significant (p < level).

    (``p_tau`` is reported but not used here: its null — τ from two random refitted directions —
    is wide whenever the outcome probes are sharp, so it rarely rejects.)
    """
    sign = tau_sign(gate_ce, gate_ec)
    if sign > 0 and p_ce < level:
        return "c->e"
    if sign < 0 and p_ec < level:
        return "e->c"
    return "none"


def run_cage(
    z_train: Any,
    labels: Mapping[str, Any],
    pairs: str | Sequence[Any],
    config: CageConfig | None = None,
    latents: Any | None = None,
    generator: Generator | None = None,
    image_probe: ImageProbe | None = None,
) -> CageResult:
    """The whole CAGE analysis for ``pairs`` on encoded data ``z_train: [N, D]`` with ``labels``.

    ``latents: [K, D]`` are the prior samples; when omitted they come from
    ``generator.sample_latents(config.num_latents, seed=config.seed)``. The image outcome needs
    ``generator`` (``decode``) and ``image_probe`` (:class:`~causalscene.probes.ImageProbe`).
    """
    config = config or CageConfig()
    config.validate()
    if not labels:
        raise ValueError("labels must name at least one attribute")
    pair_list = parse_pairs(pairs, list(labels))
    involved = sorted({a for pair in pair_list for a in pair})
    sub_labels = {a: labels[a] for a in involved}
    probe = LatentProbe(l2=config.l2, method=config.probe, device=resolve_device(config.device))
    probe.fit(z_train, sub_labels, holdout=config.holdout, seed=config.seed)
    zk = _prior_latents(probe, config, latents, generator)
    outcome_fns = _outcome_fns(config, involved, generator, image_probe)
    if config.estimator == "calibrated":
        outcome_fns = scaled_outcomes(zk, probe, involved, outcome_fns)
    null_k = config.null_latents or (len(zk) if config.outcome == "latent" else min(len(zk), 512))
    log.info(
        "permutation null: %d attributes x %d permutations", len(involved), config.permutations
    )
    null = permutation_null(
        z_train,
        sub_labels,
        zk[:null_k],
        probe,
        pair_list,
        config.permutations,
        config.alpha,
        config.mode,
        config.seed,
        outcome_fns,
    )
    mmds = {a: _counterfactual_mmd(zk, probe, a, config) for a in involved}
    results = [
        _pair_result(c, e, zk, null_k, probe, null, mmds, outcome_fns, config) for c, e in pair_list
    ]
    return CageResult(
        pairs=results,
        config=config,
        accuracy=dict(probe.accuracy_),
        probe=probe,
        latents=zk,
        outcome_fns=outcome_fns,
    )


def _prior_latents(
    probe: LatentProbe, config: CageConfig, latents: Any | None, generator: Generator | None
) -> torch.Tensor:
    """The k prior latents ``[K, D]`` on the probe's device: ``latents``, else drawn from
    ``generator.sample_latents(config.num_latents, seed=config.seed)``."""
    assert probe.weight is not None  # fitted
    if latents is None:
        if generator is None:
            raise ValueError("run_cage needs latents or a generator with sample_latents")
        latents = generator.sample_latents(config.num_latents, seed=config.seed)
    zk = _as_tensor(latents, probe.weight.device, probe.weight.dtype)
    if zk.ndim != 2 or zk.shape[1] != probe.weight.shape[1]:
        raise ValueError(f"latents must be [K, {probe.weight.shape[1]}], got {tuple(zk.shape)}")
    return zk


def _outcome_fns(
    config: CageConfig,
    involved: Sequence[str],
    generator: Generator | None,
    image_probe: ImageProbe | None,
) -> dict[str, OutcomeFn] | None:
    """``{attribute: ψ ∘ decode}`` for the image outcome (eq. 9); None for the latent one."""
    if config.outcome != "image":
        return None
    if generator is None or image_probe is None:
        raise ValueError("outcome 'image' needs a generator and an image probe")
    return {a: image_outcome(generator, image_probe, a) for a in involved}


def _counterfactual_mmd(
    zk: torch.Tensor, probe: LatentProbe, attribute: str, config: CageConfig
) -> float:
    """MMD between p(z | m = 1) and the moved units' p(z | do(m = 1)); NaN under 2 points."""
    cf = counterfactual_latents(zk, probe, attribute, config.alpha, config.mode)
    factual = zk[cf.treated == 1]
    moved = cf.z_do1[cf.treated == 0]
    if len(factual) < 2 or len(moved) < 2:
        return float("nan")
    return mmd(factual, moved, max_samples=config.mmd_samples, seed=config.seed)


def _pair_result(
    c: str,
    e: str,
    zk: torch.Tensor,
    null_k: int,
    probe: LatentProbe,
    null: NullDistribution,
    mmds: Mapping[str, float],
    outcome_fns: Mapping[str, OutcomeFn] | None,
    config: CageConfig,
) -> PairResult:
    """GATEs both ways on all k latents, p-values against the null on its first ``null_k``."""
    fn_e = outcome_fns[e] if outcome_fns else None
    fn_c = outcome_fns[c] if outcome_fns else None
    g_ce = gate(zk, probe, c, e, config.alpha, config.mode, fn_e)
    g_ec = gate(zk, probe, e, c, config.alpha, config.mode, fn_c)
    n_ce, n_ec = null.gates[(c, e)], null.gates[(e, c)]
    n_tau = np.abs(n_ce) - np.abs(n_ec)
    if null_k != len(zk):  # the null used fewer latents: compare like with like
        g_ce_n = gate(zk[:null_k], probe, c, e, config.alpha, config.mode, fn_e)
        g_ec_n = gate(zk[:null_k], probe, e, c, config.alpha, config.mode, fn_c)
    else:
        g_ce_n, g_ec_n = g_ce, g_ec
    p_ce, p_ec = p_value(g_ce_n, n_ce), p_value(g_ec_n, n_ec)
    acc_c, acc_e = probe.accuracy_.get(c, float("nan")), probe.accuracy_.get(e, float("nan"))
    reliable = bool(
        config.holdout <= 0 or (acc_c >= config.min_accuracy and acc_e >= config.min_accuracy)
    )
    if not reliable:
        log.warning(
            "pair %s:%s flagged unreliable: held-out probe accuracy %.3f / %.3f < %.2f",
            c,
            e,
            acc_c,
            acc_e,
            config.min_accuracy,
        )
    return PairResult(
        cause=c,
        effect=e,
        gate_ce=g_ce,
        gate_ec=g_ec,
        tau=tau(g_ce, g_ec),
        p_ce=p_ce,
        p_ec=p_ec,
        p_tau=p_value(tau(g_ce_n, g_ec_n), n_tau),
        mmd_c=mmds[c],
        mmd_e=mmds[e],
        accuracy_c=acc_c,
        accuracy_e=acc_e,
        reliable=reliable,
        inferred=infer_direction(g_ce_n, g_ec_n, p_ce, p_ec, config.level),
        null_ce=n_ce.tolist(),
        null_ec=n_ec.tolist(),
        null_tau=n_tau.tolist(),
    )


def alpha_sweep(
    z: Any,
    probe: LatentProbe,
    pairs: Sequence[tuple[str, str]],
    alphas: Sequence[float],
    mode: str = "shift",
    outcome_fns: Mapping[str, OutcomeFn] | None = None,
) -> dict[str, Any]:
    """GATE(c→e), GATE(e→c) and τ for every α in ``alphas``: ``{"alpha": [...], "c:e": {...}}``."""
    if not len(alphas):
        raise ValueError("alphas must not be empty")
    for a in alphas:
        _check_alpha(a)
    out: dict[str, Any] = {"alpha": [float(a) for a in alphas]}
    for c, e in pairs:
        fn_e = outcome_fns.get(e) if outcome_fns else None
        fn_c = outcome_fns.get(c) if outcome_fns else None
        ce = [gate(z, probe, c, e, a, mode, fn_e) for a in alphas]
        ec = [gate(z, probe, e, c, a, mode, fn_c) for a in alphas]
        out[f"{c}:{e}"] = {"gate_ce": ce, "gate_ec": ec, "tau": [tau(x, y) for x, y in zip(ce, ec)]}
    return out


# ----------------------------------------------------------------------------- DAG comparison
def dag_relation(dag: Any, cause: str, effect: str) -> str:
    """The prescribed DAG's relation between two nodes (hidden nodes included in the graph).

    ``"c->e"`` / ``"e->c"`` (an edge), ``"c~>e"`` / ``"e~>c"`` (an indirect directed path),
    ``"common cause"`` (d-connected through a shared ancestor only) or ``"d-separated"``
    (marginally independent: :func:`networkx.is_d_separator` with the empty set).
    """
    import networkx as nx

    graph = dag.to_networkx()
    for node in (cause, effect):
        if node not in graph:
            raise ValueError(f"unknown attribute '{node}' (DAG nodes: {', '.join(graph.nodes)})")
    if graph.has_edge(cause, effect):
        return "c->e"
    if graph.has_edge(effect, cause):
        return "e->c"
    if nx.has_path(graph, cause, effect):
        return "c~>e"
    if nx.has_path(graph, effect, cause):
        return "e~>c"
    if nx.is_d_separator(graph, {cause}, {effect}, set()):
        return "d-separated"
    return "common cause"


_EXPECTED = {
    "c->e": "c->e",
    "c~>e": "c->e",
    "e->c": "e->c",
    "e~>c": "e->c",
    "common cause": "none",
    "d-separated": "none",
}
_KIND = {
    "c->e": "edge",
    "e->c": "edge",
    "c~>e": "indirect",
    "e~>c": "indirect",
    "common cause": "non-edge",
    "d-separated": "non-edge",
}
_DIRECTIONS = ("c->e", "e->c")


def pair_kind(relation: str) -> str:
    """``"edge"`` (a direct edge either way), ``"indirect"`` (a directed path of length ≥ 2, no
    edge) or ``"non-edge"`` (no directed path either way: a common cause only, or d-separated)
    for a :func:`dag_relation`."""
    if relation not in _KIND:
        raise ValueError(f"unknown DAG relation '{relation}' (known: {', '.join(_KIND)})")
    return _KIND[relation]


def direction_scores(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """An estimator's directions scored against a DAG, edges and non-edges apart.

    ``rows``: one per pair with ``relation`` (:func:`dag_relation`), ``inferred`` (``"c->e"``,
    ``"e->c"``, ``"undirected"``: adjacent without a direction, or ``"none"``) and ``reliable``
    (False: not scored). Returns ``{"edges", "indirect", "non_edges"}``:

    * ``edges`` (direct DAG edges, where a claim about directions can hold): ``recovered`` (the
      DAG's direction), ``reversed``, ``undirected``, ``missed`` ("none"), and ``recall`` =
      recovered / scored;
    * ``indirect`` (a directed path, no edge): the same counts with the path's direction, with no
      verdict (a total-effect estimator such as CAGE expects the direction, a graph-discovery one
      no adjacency);
    * ``non_edges`` (no directed path either way): ``kept`` (no direction, no adjacency) or
      ``spurious`` (a direction or an adjacency), and ``kept_fraction``.

    Each group also has ``pairs``, ``unreliable`` and ``scored``.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {"edge": [], "indirect": [], "non-edge": []}
    for r in rows:
        groups[pair_kind(r["relation"])].append(r)
    non_edges = _group_counts(groups["non-edge"])
    kept = sum(r["inferred"] == "none" for r in groups["non-edge"] if r["reliable"])
    non_edges.update(
        kept=kept,
        spurious=non_edges["scored"] - kept,
        kept_fraction=kept / non_edges["scored"] if non_edges["scored"] else float("nan"),
    )
    return {
        "edges": _directed_counts(groups["edge"]),
        "indirect": _directed_counts(groups["indirect"]),
        "non_edges": non_edges,
    }


def _group_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    scored = sum(bool(r["reliable"]) for r in rows)
    return {"pairs": len(rows), "unreliable": len(rows) - scored, "scored": scored}


def _directed_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Recovered / reversed / undirected / missed among the reliable ``rows`` of DAG relation
    c→e or c⇝e (and the mirror), by the direction :data:`_EXPECTED` gives them."""
    out = _group_counts(rows)
    scored = [r for r in rows if r["reliable"]]
    truth = [_EXPECTED[r["relation"]] for r in scored]
    out["recovered"] = sum(r["inferred"] == t for r, t in zip(scored, truth))
    out["reversed"] = sum(
        r["inferred"] in _DIRECTIONS and r["inferred"] != t for r, t in zip(scored, truth)
    )
    out["undirected"] = sum(r["inferred"] == "undirected" for r in scored)
    out["missed"] = sum(r["inferred"] == "none" for r in scored)
    out["recall"] = out["recovered"] / len(scored) if scored else float("nan")
    return out


@dataclass
class DagComparison:
    """Per pair: prescribed relation, its kind (edge, indirect, non-edge), inferred direction, τ,
    p-values, agreement; :attr:`scores` counts edges and non-edges apart
    (:func:`direction_scores`)."""

    rows: list[dict[str, Any]]
    dag_name: str = ""

    @property
    def scores(self) -> dict[str, dict[str, Any]]:
        return direction_scores(self.rows)

    @property
    def scored(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["reliable"]]

    @property
    def agreement_fraction(self) -> float:
        scored = self.scored
        return float(np.mean([r["agree"] for r in scored])) if scored else float("nan")

    def disagreements(self) -> list[dict[str, Any]]:
        return [r for r in self.scored if not r["agree"]]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]) if self.rows else ["cause"])
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag": self.dag_name,
            **self.scores,
            "agreement_fraction": self.agreement_fraction,  # edges and non-edges together
            "scored_pairs": len(self.scored),
            "unreliable_pairs": len(self.rows) - len(self.scored),
            "rows": self.rows,
        }

    def save(self, folder: str | Path, stem: str = "dag_comparison") -> dict[str, Path]:
        folder = Path(folder)
        return {
            "csv": atomic_write_text(folder / f"{stem}.csv", self.to_csv()),
            "json": atomic_write_json(folder / f"{stem}.json", self.to_dict()),
        }

    def rich_table(self):
        from rich.table import Table

        table = Table(title=f"prescribed ({self.dag_name}) vs inferred by CAGE")
        for col in (
            "pair",
            "kind",
            "DAG",
            "inferred",
            "τ",
            "GATE c→e",
            "GATE e→c",
            "p c→e",
            "p e→c",
            "agree",
        ):
            table.add_column(
                col, justify="right" if col not in ("pair", "kind", "DAG", "inferred") else "left"
            )
        order = {"edge": 0, "indirect": 1, "non-edge": 2}
        for r in sorted(self.rows, key=lambda r: order[r["kind"]]):
            agree = "unreliable" if not r["reliable"] else ("yes" if r["agree"] else "NO")
            table.add_row(
                f"{r['cause']}:{r['effect']}",
                r["kind"],
                r["relation"],
                r["inferred"],
                f"{r['tau']:+.4f}",
                f"{r['gate_ce']:+.4f}",
                f"{r['gate_ec']:+.4f}",
                f"{r['p_ce']:.3f}",
                f"{r['p_ec']:.3f}",
                agree,
            )
        table.caption = scores_caption(self.scores)
        return table


def scores_caption(scores: Mapping[str, Mapping[str, Any]]) -> str:
    """One line of :func:`direction_scores`: edges, then non-edges (then indirect pairs, if any)."""
    e, n, i = scores["edges"], scores["non_edges"], scores["indirect"]
    text = (
        f"DAG edges: {e['recovered']} recovered, {e['reversed']} reversed, "
        f"{e['undirected']} undirected, {e['missed']} missed of {e['scored']} scored "
        f"({e['unreliable']} unreliable); non-edges: {n['kept']} kept, {n['spurious']} spurious "
        f"of {n['scored']} scored ({n['unreliable']} unreliable)"
    )
    if i["pairs"]:
        text += (
            f"; indirect paths: {i['recovered']} along, {i['reversed']} against, "
            f"{i['missed']} none of {i['scored']} scored"
        )
    return text


def compare_with_dag(dag: Any, results: CageResult | Sequence[PairResult]) -> DagComparison:
    """Set CAGE's inferred directions beside the prescribed DAG's relation, pair by pair.

    Expected direction: c→e for an edge or an indirect path from c to e (and e→c symmetrically);
    "none" for a common cause only or d-separation. Pairs whose probes failed the
    separability check are reported with ``reliable = False`` and not scored. Each row's
    ``kind`` (:func:`pair_kind`) says whether a direction claim can be scored on it (edges); the
    comparison's :attr:`~DagComparison.scores` count edges and non-edges apart.
    """
    pairs = results.pairs if isinstance(results, CageResult) else list(results)
    rows = []
    for p in pairs:
        relation = dag_relation(dag, p.cause, p.effect)
        expected = _EXPECTED[relation]
        rows.append(
            {
                "cause": p.cause,
                "effect": p.effect,
                "relation": relation,
                "kind": pair_kind(relation),
                "expected": expected,
                "inferred": p.inferred,
                "tau": p.tau,
                "gate_ce": p.gate_ce,
                "gate_ec": p.gate_ec,
                "p_ce": p.p_ce,
                "p_ec": p.p_ec,
                "p_tau": p.p_tau,
                "accuracy_c": p.accuracy_c,
                "accuracy_e": p.accuracy_e,
                "reliable": p.reliable,
                "agree": bool(p.inferred == expected) if p.reliable else None,
            }
        )
    return DagComparison(rows=rows, dag_name=getattr(dag, "name", ""))


def all_pairs(attributes: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair once, in the given order (CAGE computes both directions of each)."""
    return list(itertools.combinations(attributes, 2))
