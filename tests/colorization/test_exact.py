"""Certain matches keep the reference's colours, and lend them to nearby pixels of similar lightness, whatever
a cautious head predicted (real photo, full VGG-19: the certainty needs the deep levels)."""

from __future__ import annotations

import pytest
import torch

from exemplar_color import Colorizer
from exemplar_color.color import rgb_to_lab
from exemplar_color.colorization.exact import (HIGH, LOW, certainty, deep_agreement, keep_exact_matches,
                                                 spread_certain_matches)
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


@pytest.mark.slow  # the full VGG-19
def test_scattered_agreements_with_another_photo_are_not_certain(data_dir, full_weights):
    """Two lighthouse photos of different scenes: the cycle closes and the deep levels agree on patches of the
    photo (chance agreements), too few for the same scene, so no colour is kept or spread."""
    c = Colorizer(device="cpu", vgg_weights=full_weights, model="analogy", size=128)
    corr, _ = c.match(data_dir / "kodak" / "kodim19.png", data_dir / "kodak" / "kodim21.png")
    per_pixel = corr.confidence * ((deep_agreement(corr) - LOW) / (HIGH - LOW)).clamp(0, 1)
    assert (per_pixel > 0.5).float().mean() > 0.05  # the patches a per-pixel rule would call certain
    assert float(certainty(corr).max()) == 0.0
    cautious = torch.full_like(corr.warped_ab, 3.0)
    l = torch.full_like(corr.confidence, 50.0)
    assert torch.equal(spread_certain_matches(cautious, corr, l), cautious)
