"""Certain matches keep the reference's colours, and lend them to nearby pixels of similar lightness, whatever
a cautious head predicted (real photo, full VGG-19: the certainty needs the deep levels)."""

from __future__ import annotations

import pytest
import torch

from exemplar_color import Colorizer
from exemplar_color.color import rgb_to_lab
from exemplar_color.colorization.exact import certainty, keep_exact_matches, spread_certain_matches
from exemplar_color.correspondence.synthetic import similarity_pair
from exemplar_color.io import load_image
from exemplar_color.layout import to_tensor
from exemplar_color.working import resize


@pytest.mark.slow  # the full VGG-19
def test_certain_matches_are_kept_and_spread_along_lightness(data_dir, full_weights):
    truth = to_tensor(load_image(data_dir / "kodak" / "kodim23.png", "RGB"))
    moved = similarity_pair(truth, 6.0, 1.05, 0.03, -0.02).reference
    c = Colorizer(device="cpu", vgg_weights=full_weights, model="analogy", size=128)
    corr, _ = c.match(truth.permute(0, 2, 3, 1)[0].numpy(), moved.permute(0, 2, 3, 1)[0].numpy())
    lab = rgb_to_lab(resize(truth, corr.warped_ab.shape[-2:]).clamp(0, 1))
    l, ab = lab[:, :1], lab[:, 1:]
    cautious = torch.zeros_like(ab)  # a head that predicts gray everywhere
    g = certainty(corr)
    assert 0.3 < (g > 0.99).float().mean() < 0.98  # a moved copy: most, not all, matches certain

    kept = keep_exact_matches(cautious, corr)
    sure = g.expand_as(kept) > 0.999
    assert torch.allclose(kept[sure], corr.warped_ab[sure], rtol=2e-3, atol=1e-3)

    spread = spread_certain_matches(cautious, corr, l)
    err = lambda x: (x - ab).pow(2).sum(1).sqrt()  # noqa: E731
    doubtful = g[:, 0] < 0.5
    assert err(spread)[doubtful].mean() < 0.8 * err(kept)[doubtful].mean()  # neighbours' colours help there
    assert (spread[sure] - kept[sure]).abs().max() < 0.2  # certain matches: still the reference's colours
