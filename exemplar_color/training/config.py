"""Every setting of a training run (:class:`TrainConfig`), with no heavy import: the command line builds its flags
from these fields without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["TrainConfig", "ARCHS", "ALPHA"]

ALPHA = 0.005  # the published weight of the perceptual loss
ARCHS = ("unet", "hypercolumn")


def _setting(default: Any, help: str) -> Any:
    """A setting's default and its help text (``{default}`` filled in); ``exemplar-color train`` makes one flag
    per field from these (see :mod:`exemplar_color.cli.train`)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a run; saved as ``config.json`` and in each checkpoint.

    ``batch_size`` is global (split over ranks; half per branch); the paper used 256 (128 + 128).
    ``val_fraction`` holds out that fraction of the targets when the manifest has no ``val`` split.
    ``max_steps`` stops early (smoke runs); the schedule still counts epochs. Each field's help text (its
    ``metadata``) is the help of its command-line flag.
    """

    pairs: str = field(metadata={"help": "pair manifest (CSV or JSON); split=val rows are held out"})
    cache: str = field(metadata={"help": "cache folder built by `exemplar-color cache build`"})
    out: str = field(metadata={"help": "run folder (resumed if it holds a run)"})
    epochs: int = _setting(10, "epochs (default {default})")
    batch_size: int = _setting(256, "global batch, half per branch (default {default}, the paper's 128 + 128)")
    lr: float = _setting(1e-4, "Adam learning rate (default {default:g})")
    lr_step_epochs: int = _setting(3, "decay the lr every N epochs (default {default})")
    lr_gamma: float = _setting(0.1, "decay factor (default {default})")
    alpha: float = _setting(ALPHA, "weight of the perceptual loss (default {default})")
    reference_chroma: float = _setting(0.0, "weight of a chrominance loss on the real-reference branch too "
                                            "(default {default:g})")
    saturation: float = _setting(0.0, "weight of the per-image colourfulness-matching loss on that branch "
                                      "(default {default:g})")
    perceptual_level: str = _setting("relu5_1", "VGG-19 level of the perceptual loss (default {default})")
    vgg_weights: str | None = _setting(None, "VGG-19 weight file for the perceptual loss")
    arch: str = _setting("unet", "network: unet (the published U-Net) or hypercolumn (reads the target's frozen "
                                 "VGG-19 features, predicts an ab distribution, also colours with no reference; "
                                 "needs a cache built with --features) (default {default})")
    width: float = _setting(1.0, "network channel multiplier (default {default}: ~34 M parameters; hypercolumn: "
                                 "x 128 trunk channels)")
    depth: int = _setting(4, "hypercolumn: residual blocks of the trunk (default {default})")
    rebalance: float = _setting(0.5, "hypercolumn: class rebalancing lambda in training, 1 = off (the calibrated "
                                     "readout rebalances either way) (default {default:g})")
    cycle_ce: float = _setting(1.0, "hypercolumn: weight of the cross-entropy on the chrominance (T'_ab) branch "
                                    "against the real- and no-reference branches' (default {default:g})")
    temperature: float = _setting(0.5, "hypercolumn: annealed-mean readout temperature (default {default})")
    seed: int = _setting(0, "seed of initialisation and data order (default {default})")
    checkpoint_every: int = _setting(1000, "steps between checkpoints (default {default})")
    keep_checkpoints: int = _setting(3, "checkpoints kept (default {default})")
    val_fraction: float = _setting(0.0, "hold out this fraction of targets when the manifest has no val split")
    val_every: int = _setting(0, "validate every N steps (default {default}: every epoch)")
    log_every: int = _setting(10, "steps between metric rows (default {default})")
    max_steps: int | None = _setting(None, "stop after N steps (smoke runs)")
    num_workers: int = _setting(2, "data-loading worker processes (default {default})")
    amp: str = _setting("auto", "mixed precision on CUDA: auto, bf16, fp16, off (default {default})")
    device: str = _setting("auto", "torch device (default {default})")
    resume: bool = _setting(True, "continue the run in ``out`` if it holds one")
    progress: bool = _setting(True, "show a progress bar")
    augment: bool = _setting(False, "unet: random flip, crop and scale of every record; hypercolumn: random "
                                    "left-right mirror with the mirrored photo's own features (a cache built with "
                                    "--mirrored)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**d)
