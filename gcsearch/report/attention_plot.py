"""`gcsearch analyze --plot`: attention maps over the validation images they were computed on.

One row per image: the image, then per block with attention its map(s) laid over it. An NL block shows the maps
of a few query positions (marked with a cross), a GC or SNL block its one map. Maps that look alike across the
query positions are the paper's finding. matplotlib is imported only here (`pip install 'gcsearch[plots]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gcsearch.report.plot import check_plot_path

__all__ = ["check_plot_path", "draw_attention"]
QUERIES = 3  # query positions shown per NL block: corner, centre, opposite side


def draw_attention(path: Path, images: Any, stats: list[Any], *, title: str) -> None:
    """`images`: uint8 [N, C, H, W]; `stats`: gcsearch.model.attention.BlockStats with `maps` kept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []  # (block name, query index or None) per column after the image
    for s in stats:
        if not s.maps:
            continue
        if s.kind == "nl":
            hw = s.maps[0].shape[0]
            panels += [(s, q) for q in sorted({0, hw // 2 + int(hw**0.5) // 2, hw - 1})[:QUERIES]]
        else:
            panels.append((s, None))
    n = int(images.shape[0])
    fig, axes = plt.subplots(n, 1 + len(panels), figsize=(1.8 * (1 + len(panels)), 1.9 * n), squeeze=False)
    size = images.shape[-1]
    for i in range(n):
        picture = images[i].permute(1, 2, 0).numpy()
        picture = picture[..., 0] if picture.shape[2] == 1 else picture
        axes[i][0].imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        axes[i][0].set_title("image" if i == 0 else "", fontsize=8)
        top = max(float(s.maps[i].max()) for s, _ in panels)  # one colour scale per image: flat maps look flat
        for j, (s, q) in enumerate(panels, start=1):
            ax = axes[i][j]
            maps = s.maps[i]
            side = maps.shape[-1]
            attention = maps.reshape(-1, side, side)[q] if q is not None else maps.reshape(side, side)
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            ax.imshow(attention.numpy(), cmap="jet", alpha=0.55, extent=(0, size, size, 0),
                      interpolation="bilinear", vmin=0.0, vmax=top)
            if q is not None:
                scale = size / side
                ax.plot((q % side + 0.5) * scale, (q // side + 0.5) * scale, "wx", markersize=7, mew=2)
            if i == 0:
                ax.set_title(f"{s.name} {'NL q' + str(q) if q is not None else 'GC'}", fontsize=7)
    for row in axes:
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(check_plot_path(path), dpi=110)
    plt.close(fig)
