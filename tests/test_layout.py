"""One place for image layouts: numpy channels last, torch channels first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exemplar_color.io import load_image
from exemplar_color.layout import as_batch, to_array, to_tensor


@pytest.fixture(scope="module")
def photo(data_dir) -> np.ndarray:
    return load_image(data_dir / "kodak" / "kodim23.png", "RGB")[:64, :96]


def test_to_tensor_and_to_array_are_inverse_on_a_real_photo(photo):
    t = to_tensor(photo)
    assert t.shape == (1, 3, 64, 96) and t.dtype == torch.float32
    assert torch.equal(t[0, 1], torch.from_numpy(photo[..., 1]))  # channel 1 is green, not a row
    assert np.array_equal(to_array(t), photo) and to_array(t).dtype == np.float32
    gray = photo.mean(2)
    assert to_tensor(gray).shape == (1, 1, 64, 96) and np.array_equal(to_array(to_tensor(gray)), gray.astype(np.float32))
    assert np.array_equal(to_array(t[0]), photo)  # (C, H, W) too


def test_as_batch_reads_both_layouts_and_scales_uint8(photo):
    u8 = np.round(photo * 255).astype(np.uint8)
    a, batched = as_batch(u8)
    assert not batched and a.shape == (1, 3, 64, 96) and a.dtype == torch.float64
    assert torch.allclose(a, torch.from_numpy(u8).permute(2, 0, 1)[None].double() / 255)
    b, batched = as_batch(torch.from_numpy(np.stack([photo, photo])).permute(0, 3, 1, 2), dtype=None)
    assert batched and b.shape == (2, 3, 64, 96) and b.dtype == torch.float32
    g, _ = as_batch(photo.mean(2), dtype=None, gray=True)
    assert g.shape == (1, 1, 64, 96) and g.dtype == torch.float32  # a float array keeps its dtype


def test_as_batch_names_what_it_expected(photo):
    with pytest.raises(ValueError, match=r"pred: numpy images must be \(H, W, 3\)"):
        as_batch(photo.mean(2), "pred")  # gray only where asked for
    with pytest.raises(ValueError, match=r"tensors must be \(3, H, W\)"):
        as_batch(torch.zeros(2, 64, 96))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        as_batch([[0.0]])
