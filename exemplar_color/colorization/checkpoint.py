"""Colorization sub-net checkpoints: safetensors tensors plus a JSON config, never pickles.

A checkpoint is one ``.safetensors`` file. Its header metadata holds the JSON under the key
``exemplar_color`` (the network config: architecture, levels, backbone variant, width, size, plus
free-form training metadata), so the file alone is enough to rebuild the network; a ``.json`` sidecar
with the same content is written beside it for people and tools. Both writes are atomic.

Loading rebuilds the network from the stored config and refuses, with :class:`ConfigMismatchError`
naming the difference, a checkpoint whose architecture, levels or backbone variant are not the ones
asked for, or whose tensors do not fit the architecture: a checkpoint never silently runs with the
wrong inputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..artifacts import refuse_differences
from ..errors import ConfigMismatchError, WeightsError
from ..io import atomic_write
from . import hypercolumn
from .network import ARCH, ColorizationNet, ColorizationNetConfig

ARCHITECTURES: dict[str, tuple[type, type]] = {
    ARCH: (ColorizationNetConfig, ColorizationNet),
    hypercolumn.ARCH: (hypercolumn.HypercolumnConfig, hypercolumn.HypercolumnNet),
}
"""Architecture name -> (config class, network class): every network a checkpoint may hold."""
AnyNet = ColorizationNet | hypercolumn.HypercolumnNet

__all__ = ["save_checkpoint", "load_checkpoint", "read_metadata", "load_model", "release_gain", "MODEL_PREFIX",
           "META_KEY", "ARCHITECTURES"]

META_KEY = "exemplar_color"
MODEL_PREFIX = "model."
KIND = "colorization-net"


def save_checkpoint(path: str | os.PathLike, model: AnyNet, *, extra_tensors: dict[str, torch.Tensor]
                    | None = None, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (and optional training state) atomically as ``path`` (+ ``path.json``).

    Args:
        path: destination ``.safetensors`` file.
        model: the network (a DDP/compiled wrapper's ``.module`` must be passed unwrapped).
        extra_tensors: more tensors to store (e.g. optimiser state), keys must not start with ``model.``.
        extra_meta: JSON-serialisable metadata stored next to the config (e.g. step, schedule state).
    """
    p = Path(path)
    tensors = {MODEL_PREFIX + k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        if k.startswith(MODEL_PREFIX):
            raise ValueError(f"extra tensor key {k!r} clashes with the model's prefix")
        tensors[k] = v.detach().to("cpu").contiguous()
    meta = {"kind": KIND, "config": model.config.to_dict(), **(extra_meta or {})}
    text = json.dumps(meta, sort_keys=True)
    with atomic_write(p) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: text})
    with atomic_write(p.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return p


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON stored in a checkpoint's header (cheap: tensors are not read)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: checkpoint not found")
    try:
        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{p}: not a safetensors checkpoint ({e})") from None
    if META_KEY not in header:
        raise ConfigMismatchError(f"{p}: not an exemplar_color colorization checkpoint (no {META_KEY!r} "
                                  f"metadata in its header)")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as e:
        raise WeightsError(f"{p}: checkpoint metadata is not valid JSON ({e})") from None
    if meta.get("kind") != KIND or "config" not in meta:
        raise ConfigMismatchError(f"{p}: holds {meta.get('kind')!r}, not a {KIND!r} checkpoint")
    return meta


def _config_of(path: Path, meta: dict[str, Any]) -> Any:
    arch = meta["config"].get("arch")
    if arch not in ARCHITECTURES:
        raise ConfigMismatchError(f"{path}: unknown architecture {arch!r}; this version reads "
                                  f"{', '.join(sorted(ARCHITECTURES))}")
    try:
        return ARCHITECTURES[arch][0].from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise ConfigMismatchError(f"{path}: invalid network config in checkpoint ({e})") from None


def load_checkpoint(path: str | os.PathLike, expected: Any = None, map_location: str | torch.device = "cpu",
                    ) -> tuple[AnyNet, dict[str, Any], dict[str, torch.Tensor]]:
    """Rebuild the network from a checkpoint.

    Args:
        path: a ``.safetensors`` file written by :func:`save_checkpoint`.
        expected: a network config; if given, the architecture, levels (and feature levels) and backbone
            variant must equal these (the width is the checkpoint's own).
        map_location: device for the tensors.

    Returns:
        ``(model in eval mode, metadata, extra tensors)``.

    Raises:
        ConfigMismatchError: the checkpoint's config differs from ``expected`` or its tensors do not
            fit the architecture it declares.
        WeightsError: the file is missing or not a safetensors file.
    """
    p = Path(path)
    meta = read_metadata(p)
    config = _config_of(p, meta)
    if expected is not None:  # what fixes the meaning of the inputs (a checkpoint brings its own width)
        have, want = config.to_dict(), expected.to_dict()
        keys = [k for k in ("arch", "arch_version", "levels", "features", "variant") if k in have or k in want]
        refuse_differences(str(p), {k: have.get(k) for k in keys}, {k: want.get(k) for k in keys},
                           built="checkpoint was built for another configuration", have_name="checkpoint has",
                           want_name="expected", fix="load it without an expected configuration, or use its own")
    try:
        tensors = load_file(str(p), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{p}: damaged checkpoint, its tensors cannot be read ({e})") from None
    state = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    extra = {k: v for k, v in tensors.items() if not k.startswith(MODEL_PREFIX)}
    model = ARCHITECTURES[config.arch][1](config)
    own = model.state_dict()
    if config.arch == hypercolumn.ARCH:  # buffers added after the first checkpoints: their default
        state = {**{k: own[k] for k in hypercolumn.OPTIONAL_BUFFERS if k not in state}, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected else
                f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, the architecture needs "
                f"{tuple(own[wrong[0]].shape)}")
        raise ConfigMismatchError(f"{p}: tensors do not fit the {config.arch} architecture of width "
                                  f"{config.width} for levels {list(config.levels)}: {what}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # what a diverged training run leaves: it would colour every photo black
        raise WeightsError(f"{p}: damaged checkpoint: tensor {bad[0]} holds NaN or infinite values "
                           f"({len(bad)} tensor(s) in all)")
    model.load_state_dict(state)
    return model.to(map_location).eval(), meta, extra


def load_model(path: str | os.PathLike, expected: Any = None,
               map_location: str | torch.device = "cpu") -> AnyNet:
    """Just the network (eval mode); see :func:`load_checkpoint`."""
    return load_checkpoint(path, expected, map_location)[0]


def export_release(src: str | os.PathLike, dst: str | os.PathLike, chroma_gain: float = 1.0,
                   temperature: float | None = None, logit_bias: torch.Tensor | None = None,
                   gate_power: float | None = None,
                   vivid: tuple[float, torch.Tensor] | None = None) -> Path:
    """A training checkpoint as a release file: the network only (no optimiser or RNG state), float16
    tensors (half the size; the network runs in float32 after loading), its training summary, the
    ``chroma_gain`` the Colorizer applies by default and, for the hypercolumn sub-net, its readout
    ``temperature`` and ``logit_bias`` (calibrated on held-out training pairs), and its optional ``vivid``
    readout (temperature, logit bias)."""
    if not 0 < chroma_gain <= 3:
        raise ValueError(f"chroma_gain must be in (0, 3], got {chroma_gain}")
    model, meta, _ = load_checkpoint(src)
    if temperature is not None or gate_power is not None:
        readout = {k: v for k, v in (("temperature", temperature), ("gate_power", gate_power)) if v is not None}
        model.config = dataclasses.replace(model.config, **readout)
    if logit_bias is not None:
        model.logit_bias.copy_(logit_bias)
    if vivid is not None:
        model.config = dataclasses.replace(model.config, vivid_temperature=vivid[0])
        model.vivid_logit_bias.copy_(vivid[1])
    train = meta.get("train", {})
    summary = {"step": train.get("step"), "val": train.get("val"), "source": Path(src).name,
               "chroma_gain": chroma_gain}
    if train.get("config"):
        keep = ("epochs", "batch_size", "lr", "alpha", "perceptual_level", "augment", "seed", "max_steps",
                "lr_step_epochs", "width", "reference_chroma", "saturation", "arch", "depth", "rebalance",
                "cycle_ce", "temperature")
        summary["recipe"] = {k: train["config"].get(k) for k in keep}
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    p = Path(dst)
    text = json.dumps({"kind": KIND, "config": model.config.to_dict(), "release": summary}, sort_keys=True)
    with atomic_write(p) as tmp:
        save_file({MODEL_PREFIX + k: v.contiguous() for k, v in half.items()}, str(tmp), metadata={META_KEY: text})
    with atomic_write(p.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n")
    return p


def release_gain(path: Path, meta: dict[str, Any]) -> float:
    """The chroma gain a checkpoint's metadata asks for, checked like ``--chroma-gain`` (1 when absent)."""
    gain = meta.get("release", {}).get("chroma_gain", 1.0)
    if gain is None:
        return 1.0
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0 < gain <= 3:
        raise WeightsError(f"{path}: damaged checkpoint: its chroma_gain {gain!r} is not a number in (0, 3]")
    return float(gain)
