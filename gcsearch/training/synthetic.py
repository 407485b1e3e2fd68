"""The generated dataset: no download, and a task where global context matters (see `make_synthetic`).

Changing the images this module makes changes every study's results: bump `config.SYNTHETIC_VERSION` with it.
"""

from __future__ import annotations

import torch

SYNTHETIC_CLASSES = 5


def _shape_masks(size: int) -> torch.Tensor:
    """Five outline shapes on a size x size canvas: ring, plus, filled square, X, small center square."""
    m = torch.zeros(SYNTHETIC_CLASSES, size, size)
    t = max(size // 5, 1)  # stroke width
    mid = size // 2
    m[0] = 1
    m[0, t:-t, t:-t] = 0
    m[1, mid - t // 2 - 1 : mid + (t + 1) // 2, :] = 1
    m[1, :, mid - t // 2 - 1 : mid + (t + 1) // 2] = 1
    m[2] = 1
    r = torch.arange(size)
    for d in range(t):
        keep = r + d < size
        m[3, r[keep], (r + d)[keep]] = 1
        m[3, r[keep], (size - 1 - r - d).clamp(min=0)[keep]] = 1
    q = max(size // 3, 1)
    m[4, q:-q, q:-q] = 1
    return m


def _paste(img: torch.Tensor, color: torch.Tensor, mask: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> None:
    """Paint `color` (n x 3) where `mask` (n x h x w, 0/1) is set, with its corner at (ys, xs), in place."""
    n, h, w = mask.shape
    rows = (ys[:, None] + torch.arange(h))[:, :, None].expand(n, h, w)
    cols = (xs[:, None] + torch.arange(w))[:, None, :].expand(n, h, w)
    batch = torch.arange(n)[:, None, None].expand(n, h, w)
    on = mask > 0
    patch = img[batch, :, rows, cols]  # n x h x w x 3
    patch = torch.where(on[..., None], color[:, None, None, :], patch)
    img[batch, :, rows, cols] = patch


def make_synthetic(
    n: int, seed: int, image_size: int = 32, *, with_factors: bool = False
) -> tuple[torch.Tensor, ...]:
    """`n` generated images (uint8 n x 3 x S x S) and labels in 0..4; the same seed gives the same images.

    Each image is colored noise with random colored blobs (clutter), a faint color cast over the whole
    image (warm or cool: one hidden bit), and one bright shape out of five at a random place. The label is
    (shape + cast) mod 5: the shape alone leaves two candidates, and the cast alone says nothing. The cast
    is weak per pixel and its strength varies per image, so a small neighbourhood, blobs included, often
    tells it wrongly, while an average over the whole image tells it well. Recognizing the class therefore
    needs the image-wide cast at the shape's location, which a global-context block brings there in one
    step while plain convolutions must build it up through their receptive field. At 32 x 32 the proxy's
    c5 already sees the whole image, so plain ResNets learn it too, only later (measured in BENCHMARKS.md).

    Images are made in chunks of `SYNTHETIC_CHUNK`, each from its own seed, so the first k images of a set
    do not depend on its size: a larger train_size adds images and keeps the others.
    With `with_factors`, also returns the shape (0..4) and the cast (0 cool, 1 warm) of every image.
    """
    chunks = [_synthetic_chunk(seed * 1_000_003 + k, image_size) for k in range(-(-n // SYNTHETIC_CHUNK))]
    if not chunks:
        chunks = [_synthetic_chunk(0, image_size)]
    parts = tuple(torch.cat([c[i] for c in chunks])[:n] for i in range(4))
    return parts if with_factors else parts[:2]


def background(n: int, s: int, g: torch.Generator) -> torch.Tensor:
    """`n` float images (n x 3 x s x s, about 0..1) of colored noise and clutter, drawn from `g`."""
    img = 0.5 + SYNTHETIC_NOISE * torch.randn(n, 3, s, s, generator=g)
    cell = max(s // 4, 2)
    # clutter: blobs in distinct cells of a 4 x 4 grid, random colors, half their pixels set
    cells = torch.rand(n, 16, generator=g).argsort(1)[:, :SYNTHETIC_BLOBS]
    for j in range(SYNTHETIC_BLOBS):
        ys = (cells[:, j] // 4) * cell
        xs = (cells[:, j] % 4) * cell
        color = torch.rand(n, 3, generator=g)
        mask = (torch.rand(n, cell, cell, generator=g) > 0.5).float()
        _paste(img, color, mask, ys.clamp(max=s - cell), xs.clamp(max=s - cell))
    return img


def _synthetic_chunk(seed: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n = SYNTHETIC_CHUNK
    g = torch.Generator().manual_seed(seed)
    s = image_size
    img = background(n, s, g)
    cast = torch.randint(0, 2, (n,), generator=g)
    lo, hi = SYNTHETIC_CAST
    amp = (lo + (hi - lo) * torch.rand(n, generator=g)) * (2 * cast - 1).float()
    img[:, 0] += amp[:, None, None]
    img[:, 2] -= amp[:, None, None]
    size = max(round(s * 10 / 32), 3)
    shape = torch.randint(0, SYNTHETIC_CLASSES, (n,), generator=g)
    color = 0.6 + 0.4 * torch.rand(n, 3, generator=g)
    ys = torch.randint(0, s - size + 1, (n,), generator=g)
    xs = torch.randint(0, s - size + 1, (n,), generator=g)
    _paste(img, color, _shape_masks(size)[shape], ys, xs)
    x = (img.clamp_(0, 1) * 255).round_().to(torch.uint8)
    return x, (shape + cast) % SYNTHETIC_CLASSES, shape, cast


SYNTHETIC_CHUNK = 256  # images per independently seeded chunk
SYNTHETIC_NOISE = 0.2  # per-pixel std of the background noise
SYNTHETIC_BLOBS = 6  # clutter blobs per image
SYNTHETIC_CAST = (0.02, 0.06)  # range of the cast's strength per pixel (red up and blue down, or the reverse)
