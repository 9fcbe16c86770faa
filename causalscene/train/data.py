"""The dataset on the device: loaded and checked against the model's DAG, split into training and
held-out images by a permutation seeded by ``config.seed``, kept as uint8 ``[N, C, H, W]`` (a step
gathers its batch there: no host transfer per step)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalscene.dag import CausalDAG
from causalscene.model import Trainable
from causalscene.train.config import TrainConfig


def load_dataset(
    data: Any, dag: CausalDAG | None = None, max_images: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(images uint8 [N, H, W, C], {node: int64 [N]})`` from a folder, a ShardDataset or arrays;
    checked against ``dag`` (every label node present, codes in range, -1 = missing)."""
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = data
        images = np.asarray(images)
        labels = {k: np.asarray(v) for k, v in (labels or {}).items()}
        source = "<arrays>"
    else:
        root = data if isinstance(data, (str, os.PathLike)) else getattr(data, "root", data)
        source = str(root)
        from causalscene.datasets import load_arrays

        images, labels = load_arrays(Path(root), dag)  # (ShardDataset takes Path(root) too)
    if max_images is not None:
        images = images[:max_images]
        labels = {k: v[:max_images] for k, v in labels.items()}
    _check_images(images, source)
    if dag is not None:
        labels = _checked_labels(labels, dag, len(images), source)
    return images, labels


def _check_images(images: np.ndarray, source: str) -> None:
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{source}: images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}"
        )
    n, h, w, _ = images.shape
    if h != w:
        raise ValueError(f"{source}: images must be square, got {h}x{w}")
    if n < 2:
        raise ValueError(f"{source}: need at least 2 images, got {n}")


def _checked_labels(
    labels: dict[str, np.ndarray], dag: CausalDAG, n: int, source: str
) -> dict[str, np.ndarray]:
    """The label columns of ``dag``'s label nodes as int64, each checked (present, shape, codes)."""
    for node in dag.label_nodes:
        if node not in labels:
            raise ValueError(
                f"{source}: no labels for node '{node}' of DAG '{dag.name}' "
                f"(dataset columns: {', '.join(sorted(labels)) or 'none'})"
            )
        codes = labels[node]
        if codes.shape != (n,):
            raise ValueError(
                f"{source}: labels of '{node}' have shape {codes.shape}, expected ({n},)"
            )
        card = dag.cardinality(node)
        if codes.size and (codes.min() < -1 or codes.max() >= card):
            raise ValueError(
                f"{source}: labels of '{node}' outside [-1, {card}) — dataset and DAG "
                f"'{dag.name}' disagree on its states {list(dag.states(node))}"
            )
    return {k: labels[k].astype(np.int64) for k in dag.label_nodes}


@dataclass
class TrainData:
    """Training and held-out images (uint8 ``[N, C, H, W]``) and labels (``{node: int64 [N]}``)
    on the device."""

    train_images: torch.Tensor
    train_labels: dict[str, torch.Tensor]
    hold_images: torch.Tensor
    hold_labels: dict[str, torch.Tensor]
    #: label columns with a missing entry (-1) anywhere in the dataset
    partial: frozenset[str]
    #: the collapsed label sites' constant ``log p(labels)`` per training image, or None
    train_log_p_labels: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        return len(self.train_images)


def holdout_split(n_total: int, seed: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A run's ``(train, held-out)`` indices of its ``n_total`` images: a permutation seeded by
    ``seed``, the last ``round(fraction * n_total)`` (at most ``n_total - 1``) held out."""
    split = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    n_hold = min(n_total - 1, int(round(fraction * n_total)))
    return split[: n_total - n_hold], split[n_total - n_hold :]


def prepare_data(
    model: Trainable, dataset: Any, config: TrainConfig, device: torch.device
) -> TrainData:
    """Load ``dataset`` (checked against ``model.label_dag``), split it, put it on ``device``;
    tell the model its training-set size and, with ``collapse_labels``, precompute the label
    sites' constant."""
    images_np, labels_np = load_dataset(dataset, model.label_dag, config.max_images)
    image_size = images_np.shape[1]
    if image_size != getattr(model, "image_size", image_size):
        raise ValueError(
            f"dataset images are {image_size}px, the model expects {model.image_size}px"
        )
    train_idx, hold_idx = holdout_split(len(images_np), config.seed, config.holdout_fraction)
    train_idx, hold_idx = train_idx.to(device), hold_idx.to(device)
    images = (
        torch.from_numpy(np.ascontiguousarray(images_np))
        .permute(0, 3, 1, 2)
        .contiguous()
        .to(device)
    )
    labels = {k: torch.from_numpy(v).to(device) for k, v in labels_np.items()}
    data = TrainData(
        train_images=images[train_idx],
        train_labels={k: v[train_idx] for k, v in labels.items()},
        hold_images=images[hold_idx],
        hold_labels={k: v[hold_idx] for k, v in labels.items()},
        partial=frozenset(k for k, v in labels_np.items() if (v < 0).any()),
    )
    del images, labels
    model.set_data_size(data.n_train)
    if config.collapse_labels and not data.partial:
        log_p = model.collapsed_log_p_labels(data.train_labels)
        data.train_log_p_labels = log_p.to(device) if log_p is not None else None
    return data
