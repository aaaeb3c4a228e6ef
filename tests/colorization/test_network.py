"""The colorization sub-net and its checkpoints."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from exemplar_color.colorization.checkpoint import load_checkpoint, load_model, read_metadata, save_checkpoint
from exemplar_color.colorization.network import (AB_SCALE, ColorizationNet, ColorizationNetConfig, make_input)
from exemplar_color.errors import ConfigMismatchError, WeightsError

SLICES = ("relu3_1", "relu2_1", "relu1_1")


def small(width: float = 0.125, levels=SLICES, **kw) -> ColorizationNet:
    torch.manual_seed(0)
    return ColorizationNet(ColorizationNetConfig(levels=levels, width=width, **kw)).eval()


class TestArchitecture:
    def test_published_size(self):
        n = sum(p.numel() for p in ColorizationNet().parameters())
        assert 33.5e6 < n < 34.5e6, n  # the paper: ~34 M parameters, 13 input channels
        assert ColorizationNetConfig().in_channels == 13

    def test_width_scales_parameters(self):
        full = sum(p.numel() for p in ColorizationNet(levels=SLICES).parameters())
        quarter = sum(p.numel() for p in small(0.25).parameters())
        assert 0.05 < quarter / full < 0.08  # ~ width^2

    def test_channels_follow_levels(self):
        assert ColorizationNetConfig(levels=SLICES).in_channels == 9
        assert ColorizationNetConfig(levels=("relu1_1",)).in_channels == 5

    @pytest.mark.parametrize("hw", [(64, 64), (60, 44), (33, 71)])
    def test_any_size_in_bounded_ab_out(self, hw):
        net = small()
        x = torch.randn(2, 9, *hw) * 40
        y = net(x)
        assert y.shape == (2, 2, *hw)
        assert y.abs().max() <= AB_SCALE

    def test_wrong_channels_refused(self):
        with pytest.raises(ValueError, match=r"\(B, 9, H, W\)"):
            small()(torch.zeros(1, 13, 32, 32))

    def test_make_input_order(self):
        l, ab, sim = torch.full((1, 1, 8, 8), 70.0), torch.full((1, 2, 8, 8), 5.0), torch.rand(1, 6, 8, 8)
        x = make_input(l, ab, sim)
        assert x.shape[1] == 9
        assert torch.equal(x[:, 0], torch.full((1, 8, 8), 20.0))
        assert torch.equal(x[:, 1:3], ab) and torch.equal(x[:, 3:], sim)

    def test_gradients_reach_the_input_layer(self):
        net = small().train()
        net(torch.randn(2, 9, 32, 32)).pow(2).mean().backward()
        assert net.enc1[0].weight.grad.abs().sum() > 0

    @pytest.mark.parametrize("bad", [dict(levels=("relu1_1", "relu3_1")), dict(levels=("fc6",)),
                                     dict(variant="keras"), dict(width=0), dict(size=100)])
    def test_config_validation(self, bad):
        with pytest.raises(ValueError):
            ColorizationNetConfig(**bad)


class TestCheckpoint:
    def test_round_trip(self, tmp_path):
        net = small(size=64)
        path = save_checkpoint(tmp_path / "m.safetensors", net, extra_meta={"note": "x"})
        loaded, meta, extra = load_checkpoint(path, ColorizationNetConfig(levels=SLICES))
        x = torch.randn(1, 9, 40, 40)
        assert torch.equal(net(x), loaded(x))
        assert meta["note"] == "x" and not extra
        assert loaded.config == net.config
        sidecar = json.loads((tmp_path / "m.json").read_text())
        assert sidecar["config"]["levels"] == list(SLICES) and sidecar["config"]["width"] == 0.125

    def test_file_is_safetensors_not_pickle(self, tmp_path):
        path = save_checkpoint(tmp_path / "m.safetensors", small())
        raw = path.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        assert "__metadata__" in header and raw[:2] != b"\x80\x04"  # no pickle protocol marker

    def test_wrong_levels_refused(self, tmp_path):
        path = save_checkpoint(tmp_path / "m.safetensors", small())
        with pytest.raises(ConfigMismatchError, match="levels"):
            load_model(path, ColorizationNetConfig())

    def test_wrong_backbone_variant_refused(self, tmp_path):
        path = save_checkpoint(tmp_path / "m.safetensors", small())
        with pytest.raises(ConfigMismatchError, match="variant"):
            load_model(path, ColorizationNetConfig(levels=SLICES, variant="caffe"))

    def test_tensors_of_another_architecture_refused(self, tmp_path):
        path = save_checkpoint(tmp_path / "m.safetensors", small(0.125))
        meta = read_metadata(path)
        meta["config"]["width"] = 0.25  # claims a wider network than its tensors hold
        save_file(load_file(path), str(tmp_path / "bad.safetensors"), metadata={"exemplar_color": json.dumps(meta)})
        with pytest.raises(ConfigMismatchError, match="do not fit"):
            load_model(tmp_path / "bad.safetensors")

    def test_other_arch_name_refused(self, tmp_path):
        path = save_checkpoint(tmp_path / "m.safetensors", small())
        meta = read_metadata(path)
        meta["config"]["arch"] = "some-other-net"
        save_file(load_file(path), str(tmp_path / "bad.safetensors"), metadata={"exemplar_color": json.dumps(meta)})
        with pytest.raises(ConfigMismatchError, match="architecture"):
            load_model(tmp_path / "bad.safetensors")

    def test_foreign_files_refused(self, tmp_path):
        save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
        with pytest.raises(ConfigMismatchError, match="not an exemplar_color"):
            load_model(tmp_path / "plain.safetensors")
        torch.save({"w": torch.zeros(2)}, tmp_path / "pickle.pth")
        with pytest.raises(WeightsError, match="not a safetensors"):
            load_model(tmp_path / "pickle.pth")
        with pytest.raises(WeightsError, match="not found"):
            load_model(tmp_path / "absent.safetensors")


def test_release_export_is_float16_network_only_and_loads(tmp_path):
    from exemplar_color.colorization.checkpoint import export_release

    net = small()
    src = save_checkpoint(tmp_path / "run.safetensors", net, extra_tensors={"optim.0.exp_avg": torch.zeros(3)},
                          extra_meta={"train": {"step": 7, "val": {"val_ab_l1": 9.5}, "config": {"lr": 1e-3}}})
    dst = export_release(src, tmp_path / "release.safetensors")
    tensors = load_file(str(dst))
    assert all(k.startswith("model.") for k in tensors)
    assert all(v.dtype == torch.float16 for v in tensors.values() if v.is_floating_point())
    assert dst.stat().st_size < 0.6 * src.stat().st_size
    model, meta, extra = load_checkpoint(dst)
    assert not extra and meta["release"]["step"] == 7 and meta["release"]["recipe"]["lr"] == 1e-3
    x = torch.randn(1, 9, 24, 24) * 20
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=0.5)  # float16 weights: the same network
