"""Every figure of causalscene. Functions take arrays/results and a path, write a PNG atomically.

Images are ``[B, H, W, C]`` uint8 or ``[B, C, H, W]`` floats in [0, 1] (torch or numpy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from causalscene.utils import atomic_savefig, atomic_write_bytes  # noqa: E402

__all__ = ["to_uint8_nhwc", "grid_array", "save_image_grid", "draw_dag"]


def to_uint8_nhwc(images: Any) -> np.ndarray:
    """Accept torch/numpy, NCHW float in [0,1] or NHWC uint8; return NHWC uint8 (C = 1 or 3)."""
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[..., None] if array.dtype == np.uint8 else array[:, None]
    if array.dtype != np.uint8:
        if array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3):
            array = array.transpose(0, 2, 3, 1)
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return array


def grid_array(images: Any, ncol: int = 8, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile images into one ``[H', W', 3]`` uint8 array."""
    array = to_uint8_nhwc(images)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    n, h, w, _ = array.shape
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), pad_value, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = array[i]
    return out


def save_image_grid(
    images: Any,
    path: str | Path,
    ncol: int = 8,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    scale: float = 1.0,
) -> Path:
    """An image grid as PNG; with ``titles``, one small caption above each image (matplotlib)."""
    array = to_uint8_nhwc(images)
    if titles is None and suptitle is None:
        from PIL import Image

        import io

        buffer = io.BytesIO()
        grid = grid_array(array, ncol)
        image = Image.fromarray(grid)
        if scale != 1.0:
            image = image.resize((int(grid.shape[1] * scale), int(grid.shape[0] * scale)), Image.NEAREST)
        image.save(buffer, format="PNG")
        return atomic_write_bytes(path, buffer.getvalue())
    n = len(array)
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.6 * ncol * scale, 1.9 * nrow * scale), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(array[i].squeeze(-1) if array.shape[-1] == 1 else array[i], cmap="gray", vmin=0, vmax=255)
            if titles is not None:
                ax.set_title(titles[i], fontsize=6)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return atomic_savefig(fig, path)


def draw_dag(
    dag: Any,
    path: str | Path,
    edge_colors: Mapping[tuple[str, str], str] | None = None,
    extra_edges: Sequence[tuple[str, str, str]] = (),
    title: str | None = None,
) -> Path:
    """Draw a :class:`~causalscene.dag.CausalDAG` (layered by topological generation).

    Hidden nodes are drawn dashed-grey, rendered nodes filled. ``edge_colors`` colours DAG edges;
    ``extra_edges`` adds ``(a, b, colour)`` arrows that are not in the DAG (e.g. inferred ones).
    """
    import networkx as nx

    graph = dag.to_networkx()
    for layer, nodes in enumerate(nx.topological_generations(graph)):
        for node in nodes:
            graph.nodes[node]["layer"] = layer
    pos = nx.multipartite_layout(graph, subset_key="layer", align="horizontal", scale=2.0)
    pos = {k: (x, -y) for k, (x, y) in pos.items()}
    width = max(6.0, 1.3 * max(len(g) for g in nx.topological_generations(graph)))
    fig, ax = plt.subplots(figsize=(width, 1.2 + 1.3 * (1 + max(graph.nodes[n]["layer"] for n in graph))))
    colors = []
    for node in graph:
        data = graph.nodes[node]
        colors.append("#dddddd" if data.get("hidden") else ("#9ecae1" if data.get("rendered") else "#fdd0a2"))
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colors, node_size=1800, edgecolors="#333333")
    nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7)
    edges = list(graph.edges)
    edge_color = [(edge_colors or {}).get(e, "#555555") for e in edges]
    nx.draw_networkx_edges(graph, pos, ax=ax, edgelist=edges, edge_color=edge_color, arrows=True, node_size=1800, arrowsize=14)
    if extra_edges:
        nx.draw_networkx_edges(
            graph,
            pos,
            ax=ax,
            edgelist=[(a, b) for a, b, _ in extra_edges],
            edge_color=[c for _, _, c in extra_edges],
            style="dashed",
            arrows=True,
            node_size=1800,
            arrowsize=14,
            connectionstyle="arc3,rad=0.25",
        )
    ax.set_title(title or dag.name)
    ax.axis("off")
    return atomic_savefig(fig, path)
