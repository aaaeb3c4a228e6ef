"""Known-answer material for retrieval tests and benchmarks.

* :func:`near_duplicate`: the black-and-white photo a user would bring of a gallery image: gray, mildly
  cropped, rescaled and brightness-shifted. Its right answer is the gallery image it came from.
* :func:`clustered_vectors`: synthetic unit vectors of the real descriptor dimension with the structure of
  real descriptors (clusters, anisotropic spread), for first-stage recall/latency at a million entries.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..io import ImageInput, as_array

__all__ = ["near_duplicate", "clustered_vectors"]


def near_duplicate(image: ImageInput, rng: np.random.Generator, *, max_crop: float = 0.10,
                   scale: tuple[float, float] = (0.6, 1.4), shift: tuple[float, float] = (0.05, 0.15)
                   ) -> tuple[np.ndarray, dict[str, float]]:
    """A gray, cropped (each side keeps >= 1 - ``max_crop``), rescaled, brightness-shifted uint8 copy.

    Returns:
        ``(gray (H', W') uint8, parameters used)``.
    """
    rgb = as_array(image, "RGB")
    h, w = rgb.shape[:2]
    kh, kw = rng.uniform(1 - max_crop, 1.0, 2)
    ch, cw = max(16, int(round(h * kh))), max(16, int(round(w * kw)))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = rgb[y0:y0 + ch, x0:x0 + cw]
    s = float(rng.uniform(*scale))
    size = (max(16, int(round(cw * s))), max(16, int(round(ch * s))))
    img = Image.fromarray(np.round(crop * 255).astype(np.uint8)).convert("L").resize(size, Image.BICUBIC)
    delta = float(rng.uniform(*shift) * rng.choice([-1.0, 1.0]))
    gray = np.clip(np.asarray(img, np.float32) / 255.0 + delta, 0.0, 1.0)
    return np.round(gray * 255).astype(np.uint8), {"crop_h": float(kh), "crop_w": float(kw), "scale": s,
                                                    "shift": delta}


def clustered_vectors(n: int, dim: int, *, clusters: int = 4096, alpha: float = 1.3, spread: float = 0.22,
                      cluster_share: float = 0.5, seed: int = 0, batch: int = 100_000) -> np.ndarray:
    """``(n, dim)`` float32 unit vectors shaped like real pooled-ReLU descriptors, deterministic in ``seed``.

    Measured on this project's real GeM descriptors: every vector lies close to one common direction (cosine
    ~0.975 to the mean: ReLU features are all positive), and the deviations from it have a power-law PCA
    spectrum (variance ~ i^-1.3). So: ``x = m + c_k + e``, normalised, with ``m`` a unit mean direction,
    ``c_k`` one of ``clusters`` centres and ``e`` noise, both Gaussian with variance ``(1 + i)^-alpha`` along
    a random rotation, scaled so that ``|c_k + e| ~ spread`` and ``cluster_share`` of it is the centre's.
    """
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    sd = (1.0 + np.arange(dim)) ** (-alpha / 2.0)
    sd *= spread / np.linalg.norm(sd)
    basis = (sd[:, None] * rot.T).astype(np.float32)  # z @ basis has the spectrum above
    mean = rng.standard_normal(dim).astype(np.float32)
    mean /= np.linalg.norm(mean)
    centres = (rng.standard_normal((clusters, dim)).astype(np.float32) @ basis) * np.sqrt(cluster_share)
    noise_scale = np.float32(np.sqrt(1.0 - cluster_share))
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, batch):
        m = min(batch, n - s)
        x = mean + centres[rng.integers(0, clusters, m)]
        x += (rng.standard_normal((m, dim)).astype(np.float32) @ basis) * noise_scale
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out
