"""Small pretrained models shipped with the package: a CausalVAE on 64 px rpg fight scenes and one
on 64 px faces, trained by ``causalscene train`` at the GPU budget (50,000 procgen images, 100
epochs, batch 512, lr 1e-3, base channels 32, latent 16, the label-consistency term on a quarter
of each batch; one H200). Each folder is a run folder (``config.json`` with the command line,
``model.json``, ``dag.json``, ``metrics.jsonl``, ``eval.json`` measured on the GPU right after
training, the last sample and reconstruction grids) whose ``checkpoint.pt`` holds the weights
alone, stored as float16 (loaded into float32 by :func:`causalscene.train.load_run`, with
``weights_only=True``); it cannot be resumed. ``probe_factorial.pt`` beside it is the image probe ψ
that reads the rendered nodes off images (:class:`causalscene.probes.ImageProbe`), trained by the
recipe of ``causalscene evaluate --probe-images 20000 --probe-epochs 10 --seed 0`` (the one behind
``eval.json``: 20,000 fresh factorial procgen images at 64 px, each also blurred, seed 0; see
:func:`causalscene.generate.evaluation_probe`), trained on a CPU (15 and 11 CPU minutes) and
stored as float16. It reads every node of 2,000 fresh factorial images at 0.97-1.0, and lets
intervention fidelity be checked on a CPU in seconds (``tests/test_pretrained.py``).

``path("faces")`` is the folder, usable wherever a run folder is (``causalscene generate``, ``cage``...).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["NAMES", "path", "shipped"]

NAMES = ("rpg", "faces")


def path(name: str) -> Path:
    """The run folder of the pretrained model ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise ValueError(f"no pretrained model '{name}' (shipped: {', '.join(NAMES)})")
    folder = resources.files(__name__).joinpath(name)
    return Path(str(folder))


def shipped(folder: str | Path) -> str | None:
    """The name of the pretrained model whose folder ``folder`` is (symlinks followed), else None:
    verbs that write into a run folder refuse these (they are the package's own files)."""
    try:
        target = Path(folder).resolve()
    except OSError:
        return None
    return next((name for name in NAMES if path(name).resolve() == target), None)
