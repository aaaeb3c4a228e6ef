"""Edge-aware filtering and upsampling used by the analogy head and the full-resolution step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from exemplar_color.colorization.guided import box, joint_bilateral_upsample


def test_box_equals_avg_pool_with_shrinking_borders():
    x = torch.rand(1, 2, 40, 50, dtype=torch.float64)
    for r in (1, 3, 7):
        ref = F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
        assert torch.allclose(box(x, r), ref, atol=1e-12)


def test_joint_bilateral_is_bilinear_on_a_flat_guide_and_stops_at_edges():
    low = torch.rand(1, 2, 16, 16, dtype=torch.float64)
    flat_low, flat_high = torch.full((1, 1, 16, 16), 0.5, dtype=torch.float64), torch.full((1, 1, 64, 64), 0.5,
                                                                                             dtype=torch.float64)
    up = joint_bilateral_upsample(flat_low, low, flat_high, chunk_rows=20)
    ref = F.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(up, ref, atol=1e-6)
    # a vertical edge: left half dark and red, right half bright and green, the edge between low-res pixels
    guide_high = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    guide_high[..., 30:] = 1.0
    guide_low = F.interpolate(guide_high, size=(16, 16), mode="area")
    ab_low = torch.where(guide_low > 0.5, torch.tensor(-40.0, dtype=torch.float64), torch.tensor(40.0, dtype=torch.float64))
    ab_low = ab_low.expand(-1, 2, -1, -1)
    up = joint_bilateral_upsample(guide_low, ab_low, guide_high)
    bil = F.interpolate(ab_low, size=(64, 64), mode="bilinear", align_corners=False)
    left, right = up[..., 27:30], up[..., 30:33]
    assert (left > 30).all() and (right < -30).all()  # colours stay on their side of the edge
    assert (bil[..., 27:33] - up[..., 27:33]).abs().max() > 10  # where bilinear blurs across it
