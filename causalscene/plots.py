"""Every figure of causalscene. Functions take arrays/results and a path, write a PNG atomically.

Images are ``[B, H, W, C]`` uint8 or ``[B, C, H, W]`` floats in [0, 1] (torch or numpy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from causalscene.utils import atomic_savefig, atomic_write_bytes  # noqa: E402

__all__ = [
    "to_uint8_nhwc",
    "grid_array",
    "save_image_grid",
    "draw_dag",
    "plot_tau_vs_alpha",
    "plot_null_histograms",
    "plot_dag_comparison",
    "plot_points_counterfactual",
    "plot_influence_mosaic",
    "plot_module_templates",
    "plot_stability_curve",
    "plot_module_hybrids",
    "plot_sdr_histograms",
    "plot_readoff",
    "plot_training_curve",
]


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
        out[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = array[i]
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
        import io

        from PIL import Image

        buffer = io.BytesIO()
        grid = grid_array(array, ncol)
        image = Image.fromarray(grid)
        if scale != 1.0:
            image = image.resize(
                (int(grid.shape[1] * scale), int(grid.shape[0] * scale)), Image.Resampling.NEAREST
            )
        image.save(buffer, format="PNG")
        return atomic_write_bytes(path, buffer.getvalue())
    n = len(array)
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(1.6 * ncol * scale, 1.9 * nrow * scale), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(
                array[i].squeeze(-1) if array.shape[-1] == 1 else array[i],
                cmap="gray",
                vmin=0,
                vmax=255,
            )
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
    order = {n: i for i, n in enumerate(dag.nodes)}
    layers = [sorted(g, key=order.__getitem__) for g in nx.topological_generations(graph)]
    widest = max(len(g) for g in layers)
    pos = {}
    for depth, nodes in enumerate(layers):
        for i, node in enumerate(nodes):
            pos[node] = ((i - (len(nodes) - 1) / 2) * 1.6, -depth * 1.2)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.75 * widest), 1.0 + 1.35 * len(layers)))
    colors = []
    for node in graph:
        data = graph.nodes[node]
        colors.append(
            "#dddddd" if data.get("hidden") else ("#9ecae1" if data.get("rendered") else "#fdd0a2")
        )
    nx.draw_networkx_nodes(
        graph, pos, ax=ax, node_color=colors, node_size=2300, edgecolors="#333333"
    )
    labels = {n: n.replace("_", "\n", 1) if len(n) > 9 else n for n in graph}  # fit the disc
    nx.draw_networkx_labels(graph, pos, labels=labels, ax=ax, font_size=7.5)
    edges = list(graph.edges)
    edge_color = [(edge_colors or {}).get(e, "#555555") for e in edges]
    nx.draw_networkx_edges(
        graph,
        pos,
        ax=ax,
        edgelist=edges,
        edge_color=edge_color,
        arrows=True,
        node_size=2300,
        arrowsize=14,
    )
    if extra_edges:
        nx.draw_networkx_edges(
            graph,
            pos,
            ax=ax,
            edgelist=[(a, b) for a, b, _ in extra_edges],
            edge_color=[c for _, _, c in extra_edges],
            style="dashed",
            arrows=True,
            node_size=2300,
            arrowsize=14,
            connectionstyle="arc3,rad=0.25",
        )
    half = (widest - 1) / 2 * 1.6
    ax.set_xlim(-half - 0.9, half + 0.9)  # room for the node discs (drawn in points)
    ax.set_ylim(-(len(layers) - 1) * 1.2 - 0.6, 0.6)
    ax.set_title(title or dag.name)
    ax.axis("off")
    return atomic_savefig(fig, path)


# ------------------------------------------------------------------- what the images say
#: (query, source, colour, hatch) of the read-off bars: exact light, read by the probe dark
_READOFF_BARS = (
    ("given", "exact", "#fdae6b", ""),
    ("given", "read", "#e6550d", "//"),
    ("do", "exact", "#9ecae1", ""),
    ("do", "read", "#3182bd", "//"),
)


def plot_readoff(result: Mapping[str, Any], path: str | Path) -> Path:
    """Bars per state of each node: the exact P(node | X = x) and P(node | do(X = x)) beside the
    shares an image probe read off images generated for each query (± one binomial SE).

    ``result`` is :func:`causalscene.readoff.read_off_queries`' output."""
    nodes = list(result["given"])
    assignment = ", ".join(f"{k} = {v}" for k, v in result["assignment"].items())
    fig, axes = plt.subplots(1, len(nodes), figsize=(4.6 * len(nodes), 3.4), squeeze=False)
    for ax, node in zip(axes.flat, nodes):
        states = result["given"][node]["states"]
        x = np.arange(len(states))
        for i, (query, source, colour, hatch) in enumerate(_READOFF_BARS):
            entry = result[query][node]
            label = ("given " if query == "given" else "do(") + assignment
            label += ("" if query == "given" else ")") + (
                ": exact" if source == "exact" else ": read off images"
            )
            ax.bar(
                x + (i - 1.5) * 0.2,
                entry[source],
                0.2,
                color=colour,
                hatch=hatch,
                edgecolor="#333333",
                linewidth=0.5,
                yerr=entry["read_se"] if source == "read" else None,
                capsize=2,
                label=label,
            )
        ax.set_xticks(x, states)
        ax.set_ylabel(f"P({node})")
        ax.set_title(node, fontsize=10)
        ax.set_ylim(0, max(0.7, 1.15 * max(max(result[q][node]["read"]) for q in ("given", "do"))))
        ax.grid(axis="y", color="#eeeeee")
        ax.set_axisbelow(True)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return atomic_savefig(fig, path)


def plot_training_curve(
    history: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None
) -> Path:
    """Train and held-out ELBO per epoch (``metrics.jsonl`` rows)."""
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    ax.plot(epochs, [r["train_elbo"] for r in history], "-o", ms=3, label="train ELBO")
    held = [  # every eval_every epochs (null or NaN in between)
        (r["epoch"], r["heldout_elbo"])
        for r in history
        if r.get("heldout_elbo") is not None and math.isfinite(r["heldout_elbo"])
    ]
    if held:
        ax.plot(*zip(*held), "-s", ms=3, label="held-out ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (higher is better)")
    ax.set_xticks(epochs)
    ax.legend(fontsize=8)
    ax.grid(color="#eeeeee")
    ax.set_title(title or "training", fontsize=9)
    return atomic_savefig(fig, path)


# --------------------------------------------------------------------------- CAGE figures
def plot_tau_vs_alpha(sweep: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """τ(α) and both GATEs per pair from :func:`causalscene.cage.alpha_sweep`'s output."""
    alphas = sweep["alpha"]
    keys = [k for k in sweep if k != "alpha"]
    ncol = min(3, max(1, len(keys)))
    nrow = -(-max(1, len(keys)) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys):
        c, e = key.split(":")
        ax.plot(alphas, sweep[key]["tau"], "k-o", ms=3, label="τ")
        ax.plot(alphas, sweep[key]["gate_ce"], "--", color="#1f77b4", label=f"GATE {c}→{e}")
        ax.plot(alphas, sweep[key]["gate_ec"], ":", color="#d62728", label=f"GATE {e}→{c}")
        ax.axhline(0, color="#999999", lw=0.8)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
        ax.set_xlabel("α")
        ax.tick_params(labelsize=7)
        ax.set_title(f"{c} → {e}", fontsize=9)
        ax.legend(fontsize=6.5)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return atomic_savefig(fig, path)


def plot_null_histograms(
    pairs: Sequence[Any], path: str | Path, title: str | None = None, pairs_per_row: int = 2
) -> Path:
    """Permutation-null histograms of GATE (both directions) per pair, observed values marked;
    ``pairs_per_row`` pairs (two panels each) side by side.

    ``pairs``: :class:`causalscene.cage.PairResult` objects (with ``null_ce``/``null_ec``).
    """
    per_row = max(1, min(pairs_per_row, len(pairs)))
    nrow = max(1, -(-len(pairs) // per_row))
    fig, axes = plt.subplots(
        nrow, 2 * per_row, figsize=(3.3 * 2 * per_row, 2.1 * nrow), squeeze=False
    )
    for ax in axes.flat[2 * len(pairs) :]:
        ax.axis("off")
    for i, p in enumerate(pairs):
        row, col = divmod(i, per_row)
        for ax, null, obs, pv, label in (
            (axes[row, 2 * col], p.null_ce, p.gate_ce, p.p_ce, f"GATE {p.cause}→{p.effect}"),
            (axes[row, 2 * col + 1], p.null_ec, p.gate_ec, p.p_ec, f"GATE {p.effect}→{p.cause}"),
        ):
            ax.hist(np.asarray(null, float), bins=30, color="#bbbbbb")
            ax.axvline(obs, color="#d62728", lw=2)
            ax.set_title(f"{label} = {obs:+.3f}\np = {pv:.3f}", fontsize=8)
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return atomic_savefig(fig, path)


def plot_dag_comparison(
    dag: Any, comparison: Any, path: str | Path, title: str | None = None
) -> Path:
    """The prescribed DAG with CAGE's inferred arrows (dashed): green agrees, red disagrees,
    grey unreliable. A pair inferred as "none" draws no arrow (its colour goes on the DAG edge
    when the DAG has one: red = an edge CAGE missed)."""
    extra, edge_colors = [], {}
    for r in comparison.rows:
        colour = "#999999" if not r["reliable"] else ("#2ca02c" if r["agree"] else "#d62728")
        if r["inferred"] == "c->e":
            extra.append((r["cause"], r["effect"], colour))
        elif r["inferred"] == "e->c":
            extra.append((r["effect"], r["cause"], colour))
        if r["relation"] == "c->e":
            edge_colors[(r["cause"], r["effect"])] = colour
        elif r["relation"] == "e->c":
            edge_colors[(r["effect"], r["cause"])] = colour
    edges, non_edges = comparison.scores["edges"], comparison.scores["non_edges"]
    default = (
        f"{dag.name}: prescribed (solid) vs CAGE (dashed); edges recovered "
        f"{edges['recovered']}/{edges['scored']}, non-edges kept {non_edges['kept']}/"
        f"{non_edges['scored']}"
    )
    return draw_dag(dag, path, edge_colors=edge_colors, extra_edges=extra, title=title or default)


def plot_points_counterfactual(
    points: Any,
    colors: Any,
    moved: Any,
    path: str | Path,
    title: str | None = None,
    max_arrows: int = 200,
) -> Path:
    """2-D points coloured by a label, with arrows to their counterfactual positions."""
    points, moved = np.asarray(points, float), np.asarray(moved, float)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(points[:, 0], points[:, 1], c=np.asarray(colors), s=3, cmap="coolwarm", alpha=0.6)
    k = min(max_arrows, len(points))
    for a, b in zip(points[:k], moved[:k]):
        ax.annotate(
            "", xy=b, xytext=a, arrowprops={"arrowstyle": "->", "color": "#333333", "lw": 0.5}
        )
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=8)
    return atomic_savefig(fig, path)


# --- modules and SDR (Besserve et al. 2020, 2021) -------------------------------------------


def plot_influence_mosaic(
    maps: Any, path: str | Path, labels: Any = None, ncol: int = 16, title: str | None = None
) -> Path:
    """Elementary influence maps ``[C, h, w]`` as a mosaic (each map scaled to its own max),
    ordered by module when ``labels`` (module of each channel) is given, module number in the title."""
    array = maps.detach().float().cpu().numpy() if hasattr(maps, "detach") else np.asarray(maps)
    order = np.argsort(labels, kind="stable") if labels is not None else np.arange(len(array))
    n = len(order)
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(0.9 * ncol, 1.05 * nrow + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            c = int(order[i])
            ax.imshow(array[c] / max(float(array[c].max()), 1e-12), cmap="magma", vmin=0, vmax=1)
            caption = f"c{c}" + (f" m{int(np.asarray(labels)[c])}" if labels is not None else "")
            ax.set_title(caption, fontsize=6.5)
    fig.suptitle(title or "elementary influence maps", fontsize=9)
    return atomic_savefig(fig, path)


def plot_module_templates(templates: Any, path: str | Path, title: str | None = None) -> Path:
    """NMF templates ``[K, h, w]`` (rows of H), one panel per module."""
    array = np.asarray(templates, dtype=float)
    k = len(array)
    fig, axes = plt.subplots(1, k, figsize=(1.6 * k, 1.9), squeeze=False)
    for j, ax in enumerate(axes.flat):
        ax.imshow(array[j], cmap="viridis")
        ax.set_title(f"module {j}", fontsize=7)
        ax.axis("off")
    fig.suptitle(title or "module templates", fontsize=9)
    return atomic_savefig(fig, path)


def plot_stability_curve(stability: Any, path: str | Path, title: str | None = None) -> Path:
    """Split-half consistency (ARI, ± std) and template cosine similarity against K."""
    ks = np.asarray(stability.ks)
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    ax.errorbar(
        ks,
        stability.consistency,
        yerr=stability.consistency_std,
        marker="o",
        label="label consistency (ARI)",
    )
    ax.plot(ks, stability.template_cosine, marker="s", label="template cosine")
    ax.axvline(stability.best_k, color="#999999", ls=":", lw=1)
    ax.set_xlabel("number of modules K")
    ax.set_ylabel("split-half stability")
    ax.set_xticks(ks)
    ax.set_ylim(min(0.0, float(np.min(stability.consistency)) - 0.05), 1.05)
    ax.legend(fontsize=7)
    ax.set_title(
        title or f"cluster stability ({stability.method}); best K = {stability.best_k}", fontsize=8
    )
    return atomic_savefig(fig, path)


def plot_module_hybrids(
    hybrids: Mapping[str, Any],
    path: str | Path,
    module_names: Sequence[str] | None = None,
    n: int = 4,
) -> Path:
    """For each module a block of ``n`` rows: Original 1 | Hybrid | Original 2.

    ``hybrids`` is :func:`causalscene.modularity.module_hybrids`' output.
    """
    o1 = to_uint8_nhwc(hybrids["original1"][:n])
    o2 = to_uint8_nhwc(hybrids["original2"][:n])
    hy = hybrids["hybrids"]
    k, n = len(hy), len(o1)
    names = list(module_names) if module_names is not None else [f"module {j}" for j in range(k)]
    fig, axes = plt.subplots(n, 3 * k, figsize=(1.1 * 3 * k, 1.1 * n + 0.5), squeeze=False)
    for j in range(k):
        hj = to_uint8_nhwc(hy[j][:n])
        for r in range(n):
            for c, image in enumerate((o1[r], hj[r], o2[r])):
                ax = axes[r, 3 * j + c]
                ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    label = ("Original 1", f"Hybrid\n{names[j]}", "Original 2")[c]
                    ax.set_title(label, fontsize=8, fontweight="bold" if c == 1 else "normal")
    fig.tight_layout(pad=0.3)
    return atomic_savefig(fig, path)


def plot_sdr_histograms(
    groups: Mapping[str, Any], path: str | Path, bins: int = 40, title: str | None = None
) -> Path:
    """Histograms of log10 SDR per group (e.g. decoder vs encoder); SDR = 1 dashed."""
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    edges = np.linspace(-1.5, 1.5, bins + 1)
    for name, values in groups.items():
        array = np.asarray(values, dtype=float).reshape(-1)
        array = array[np.isfinite(array) & (array > 0)]
        ax.hist(
            np.clip(np.log10(array), -1.5, 1.5),
            bins=list(edges),
            alpha=0.55,
            density=True,
            label=f"{name} (n={array.size})",
        )
    ax.axvline(0.0, color="#333333", ls="--", lw=1)
    ax.set_xlabel("log10 spectral density ratio")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    ax.set_title(title or "SDR of successive conv layers", fontsize=8)
    return atomic_savefig(fig, path)
