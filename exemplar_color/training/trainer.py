"""Two-branch training of the colorization sub-net from a pair cache; one entry point for CPU, one GPU and
``torchrun`` (DistributedDataParallel when ``WORLD_SIZE > 1``).

A U-Net batch trains both published branches in one forward pass: first half chrominance (input T'_ab,
smooth-L1 to the truth), second half perceptual (the real R'_ab, VGG-19 feature L2); the hypercolumn sub-net's
three branches are :func:`.distribution.hypercolumn_loss`. Adam; bfloat16 (or float16) autocast on CUDA.

Runs resume by default. A checkpoint (safetensors + JSON, atomic) every ``checkpoint_every`` steps and at
the end holds the model, Adam's moments, the schedule, the gradient scaler, the RNG states and the data
position (epoch, step within it), and the data order is a pure function of (seed, epoch), so a run killed
at any moment and resumed ends with bit-identical weights on CPU; a finished run resumed does nothing.
Rank 0 alone validates, logs (tqdm bar, ``metrics.csv``) and writes; per-rank seeds are ``seed + rank``.

Run folder: ``config.json`` (the resolved configuration), ``metrics.csv``, ``checkpoints/step-*.safetensors``
(+ ``.json``), and ``model.safetensors`` (the final network: :func:`~exemplar_color.colorization.checkpoint.
load_model`). The state a resume restores, data order included, is :mod:`.state`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..backbone import VGG19Features
from ..colorization.checkpoint import load_checkpoint, save_checkpoint
from ..colorization.hypercolumn import FEATURE_LEVELS, HypercolumnConfig, HypercolumnNet
from ..colorization.network import ColorizationNet, ColorizationNetConfig, make_input
from ..errors import ConfigMismatchError, ExemplarColorError
from ..io import atomic_write
from ..runtime import dist_env, resolve_device
from .augment import augment, mirror
from .cache import MIRROR_PREFIX, CacheDataset, PairCache, decode
from .config import ARCHS, TrainConfig
from .distribution import bin_frequencies, hypercolumn_loss, rebalancing_weights
from .validation import evaluate, evaluate_hypercolumn
from .losses import PerceptualLoss, chrominance_loss, saturation_loss
from .pairs import PairManifest
from .state import EpochBatches, optim_from_tensors, optim_to_tensors, rng_state, set_rng_state

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "Trainer", "train", "evaluate", "latest_checkpoint"]

METRIC_COLUMNS = ("step", "epoch", "lr", "loss", "chroma", "perceptual", "ce", "pairs_per_s", "val_ab_l1",
                  "val_cycle_l1", "val_warped_l1", "val_cycle_input_l1", "val_noref_l1", "val_gray_l1",
                  "val_ab_chroma", "val_noref_chroma", "val_warped_chroma", "wall_s")


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``run_dir/checkpoints`` (None if there is none)."""
    found = sorted(Path(run_dir, "checkpoints").glob("step-*.safetensors"))
    return found[-1] if found else None


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Builds everything a run needs from a :class:`TrainConfig`; :meth:`run` trains to the end."""

    def __init__(self, config: TrainConfig):
        self.cfg = config
        self.rank, self.world, _ = dist_env()
        self.distributed = self.world > 1
        self.device = resolve_device(config.device)
        if self.distributed and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.main = self.rank == 0
        self.out = Path(config.out)

        self.cache = PairCache(config.cache)
        manifest = PairManifest.load(config.pairs, root=self.cache.plan.get("root"))
        self.train_records, self.val_records = self._split(manifest)
        self.net_config = self._net_config()
        torch.manual_seed(config.seed)  # same initial weights on every rank
        self.hypercolumn = config.arch == "hypercolumn"
        self.model = (HypercolumnNet if self.hypercolumn else ColorizationNet)(self.net_config).to(self.device)
        self.perceptual = None
        if not self.hypercolumn:
            backbone = VGG19Features([config.perceptual_level], weights=config.vgg_weights,
                                     variant=self.cache.config.variant).to(self.device)
            self.perceptual = PerceptualLoss(backbone, config.perceptual_level)
        self.bin_freq = self.training_bin_frequencies() if self.hypercolumn else None
        self.class_weights = None if self.bin_freq is None else rebalancing_weights(self.bin_freq, config.rebalance)
        if self.hypercolumn:  # the readout undoes the rebalancing (see training.distribution)
            self.model.logit_bias.copy_(-self.class_weights.log())
        self.optim = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.optim, config.lr_step_epochs, config.lr_gamma)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ddp: nn.Module = self.model
        if self.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.batches = EpochBatches(len(self.train_records), config.batch_size, config.seed, self.rank, self.world)
        self.epoch, self.step_in_epoch, self.step = 0, 0, 0
        self.last_val: dict[str, float] = {}
        self.best_val: float | None = None  # lowest held-out ab error so far (best.safetensors holds that model)

    # -- setup helpers

    def _net_config(self) -> Any:
        cfg, cache = self.cfg, self.cache.config
        if cfg.arch not in ARCHS:
            raise ValueError(f"unknown arch {cfg.arch!r}; choose from {', '.join(ARCHS)}")
        if cfg.arch == "unet":
            return ColorizationNetConfig(levels=cache.levels, variant=cache.variant, width=cfg.width, size=cache.size)
        if cfg.augment and not self.cache.mirrored:
            raise ConfigMismatchError(f"{self.cache.root}: --augment mirrors records with the mirrored photos' own "
                                      f"features, which this cache lacks: add them with `cache build ... --mirrored`")
        missing = [lv for lv in FEATURE_LEVELS if lv not in cache.features]
        if missing:
            raise ConfigMismatchError(
                f"{self.cache.root}: the cache holds no target features at {missing} (it has {list(cache.features)}), "
                f"which --arch hypercolumn reads; build a new cache with `exemplar-color cache build ... --features "
                f"{','.join(FEATURE_LEVELS)}`")
        return HypercolumnConfig(levels=cache.levels, features=FEATURE_LEVELS, variant=cache.variant,
                                 width=round(128 * cfg.width), depth=cfg.depth, size=cache.size,
                                 temperature=cfg.temperature)

    def training_bin_frequencies(self, sample: int = 1024) -> torch.Tensor:
        """How often each ab bin occurs in (up to ``sample``) training photos (a seeded draw): what rebalances."""
        recs = random.Random(self.cfg.seed).sample(self.train_records, min(sample, len(self.train_records)))
        abs_ = (torch.from_numpy(self.cache.read(r, ("ab",))["ab"]).float()[None] for r in recs)
        return bin_frequencies(abs_, self.model.centres.cpu()).to(self.device)
    def _split(self, manifest: PairManifest) -> tuple[list[int], list[int]]:
        """Records of the manifest's pairs, split into train / val (manifest split, else ``val_fraction``)."""
        cache_pairs = {(t, r) for t, r, _ in self.cache.pairs}
        absent = [p for p in manifest.pairs if (p.target, p.reference) not in cache_pairs]
        if absent:
            raise ConfigMismatchError(f"{manifest.source}: {len(absent)} pair(s) are not in the cache {self.cache.root} "
                                      f"(e.g. {absent[0].target} -> {absent[0].reference}); build the cache from "
                                      f"this manifest")
        split = {(p.target, p.reference): p.split for p in manifest.pairs}
        if self.cfg.val_fraction and not manifest.split("val"):
            targets = sorted({p.target for p in manifest.pairs})
            rng = random.Random(self.cfg.seed)
            held = set(rng.sample(targets, round(self.cfg.val_fraction * len(targets))))
            split = {k: "val" if k[0] in held else "train" for k in split}
        recs = self.cache.records_of(list(split))
        train, val = [], []
        for rec in recs:
            t, r, _ = self.cache.pairs[self.cache.pair_index[rec]]
            (val if split[(t, r)] == "val" else train).append(rec)
        return train, val

    def _amp_dtype(self) -> torch.dtype | None:
        if self.cfg.amp == "off" or self.device.type != "cuda":
            if self.cfg.amp not in ("off", "auto"):
                raise ValueError(f"--amp {self.cfg.amp} needs CUDA")
            return None
        if self.cfg.amp in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def _loader(self, records: Sequence[int], batch_sampler: Any = None, batch_size: int = 0) -> Any:
        workers = self.cfg.num_workers
        kw: dict[str, Any] = dict(num_workers=workers, pin_memory=self.device.type == "cuda",
                                  persistent_workers=workers > 0 and batch_sampler is not None,
                                  **({"prefetch_factor": 4} if workers > 0 else {}))
        mirrored = self.cache.mirrored_fields if self.hypercolumn and self.cfg.augment and batch_sampler else ()
        ds = CacheDataset(self.cache, records, self.cache.fields + mirrored)  # training reads mirrored features too
        if batch_sampler is not None:
            return torch.utils.data.DataLoader(ds, batch_sampler=batch_sampler, **kw)
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, **kw)

    # -- checkpoints

    def _save(self, final: bool = False) -> Path:
        otens, ometa = optim_to_tensors(self.optim.state_dict())
        rtens, rmeta = rng_state()
        meta = {"train": {"step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                          "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                          "optimizer": ometa, "rng": rmeta, "config": asdict(self.cfg), "val": self.last_val,
                          "best_val": self.best_val}}
        ckdir = self.out / "checkpoints"
        path = save_checkpoint(ckdir / f"step-{self.step:08d}.safetensors", self.model,
                               extra_tensors={**otens, **rtens}, extra_meta=meta)
        for old in sorted(ckdir.glob("step-*.safetensors"))[:-max(1, self.cfg.keep_checkpoints)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
        if final:
            save_checkpoint(self.out / "model.safetensors", self.model,
                            extra_meta={"train": {"step": self.step, "config": asdict(self.cfg), "val": self.last_val}})
        return path

    def _resume(self) -> bool:
        path = latest_checkpoint(self.out)
        if path is None:
            return False
        model, meta, extra = load_checkpoint(path, self.net_config, map_location=self.device)
        if model.config != self.net_config:
            raise ConfigMismatchError(f"{path}: run was started with network {model.config.to_dict()}, asked for "
                                      f"{self.net_config.to_dict()}; use another --out to start a new run")
        st = meta["train"]
        self.model.load_state_dict(model.state_dict())
        self.optim.load_state_dict(optim_from_tensors(extra, st["optimizer"]))
        self.sched.load_state_dict(st["scheduler"])
        if st["scaler"]:
            self.scaler.load_state_dict(st["scaler"])
        set_rng_state(extra, st["rng"])
        self.step, self.epoch, self.step_in_epoch = st["step"], st["epoch"], st["step_in_epoch"]
        self.last_val = st.get("val", {})
        self.best_val = st.get("best_val")
        if self.main:
            log.info("resumed %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch + 1,
                     self.step_in_epoch)
        return True

    # -- logging

    def _log(self, row: dict[str, Any]) -> None:
        if not self.main:
            return
        path = self.out / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, METRIC_COLUMNS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def _last_validation(self) -> dict[str, float]:
        """The last validation figures ``metrics.csv`` holds (those of a finished run)."""
        with open(self.out / "metrics.csv", newline="") as f:  # written before any checkpoint
            rows = [{k: float(v) for k, v in r.items() if k.startswith("val_") and v} for r in csv.DictReader(f)]
        return next((r for r in reversed(rows) if r), {})

    def _trim_log(self) -> None:
        """Drop metric rows past the resumed step (they were logged by the killed run after its checkpoint)."""
        path = self.out / "metrics.csv"
        if not (self.main and path.exists()):
            return
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, METRIC_COLUMNS)
            w.writeheader()
            w.writerows(rows)

    # -- training

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimiser step on one batch: first half chrominance branch, second half perceptual branch."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.hypercolumn:
            return self._hypercolumn_step(decode(mirror(batch, MIRROR_PREFIX) if self.cfg.augment else batch))
        x = decode(batch)
        if self.cfg.augment:
            x = augment(x)
        n = x["l"].shape[0]
        nc = (n + 1) // 2
        ab_in = torch.cat([x["cycle_ab"][:nc], x["warped_ab"][nc:]])
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else nullcontext())
        with autocast:
            pred = self.ddp(make_input(x["l"], ab_in, x["similarity"]))
            chroma = chrominance_loss(pred[:nc], x["ab"][:nc])
            perc = (self.perceptual(x["l"][nc:], pred[nc:], x["ab"][nc:]) if n > nc
                    else pred.new_zeros(()))
            loss = chroma + self.cfg.alpha * perc
            if n > nc and self.cfg.reference_chroma:  # optional: supervise the real-reference branch directly
                loss = loss + self.cfg.reference_chroma * chrominance_loss(pred[nc:], x["ab"][nc:])
            if n > nc and self.cfg.saturation:
                loss = loss + self.cfg.saturation * saturation_loss(pred[nc:], x["ab"][nc:])
        self.optim.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optim)
        self.scaler.update()
        return {"loss": loss.detach(), "chroma": chroma.detach(), "perceptual": perc.detach()}

    def _hypercolumn_step(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else nullcontext())
        with autocast:
            parts = hypercolumn_loss(self.ddp, self.model, x, self.class_weights, self.cfg.cycle_ce)
        self.optim.zero_grad(set_to_none=True)
        self.scaler.scale(parts["loss"]).backward()
        self.scaler.step(self.optim)
        self.scaler.update()
        return {k: v.detach() for k, v in parts.items()}

    def validate(self) -> dict[str, float]:
        if not self.val_records or not self.main:
            return {}
        loader = self._loader(self.val_records, batch_size=max(1, self.cfg.batch_size // self.world))
        if self.hypercolumn:
            batches = (decode({k: v.to(self.device) for k, v in b.items()}) for b in loader)
            self.last_val = evaluate_hypercolumn(self.model, batches)
        else:
            self.last_val = evaluate(self.model, loader, self.device)
        score = self.last_val.get("val_ab_l1")
        if score is not None and (self.best_val is None or score < self.best_val):
            # training can overshoot (the chrominance branch pulls towards copying the warped input):
            # keep the model that did best on held-out pairs beside the final one
            self.best_val = score
            save_checkpoint(self.out / "best.safetensors", self.model, extra_meta={
                "train": {"step": self.step, "config": asdict(self.cfg), "val": self.last_val}})
        return self.last_val

    def run(self) -> dict[str, Any]:
        """Train to the end (or ``max_steps``); returns the final metrics."""
        from tqdm import tqdm

        cfg = self.cfg
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        resumed = cfg.resume and self._resume()
        if not resumed and latest_checkpoint(self.out) is not None:
            raise ExemplarColorError(f"{self.out} already holds a run; resume it (default) or use another --out")
        spe = self.batches.steps_per_epoch
        total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * spe)
        if resumed and self.step >= total and (self.out / "model.safetensors").is_file():
            return {"step": self.step, "epoch": self.epoch, **self._last_validation()}  # finished: nothing redone
        if self.main:
            with atomic_write(self.out / "config.json") as tmp:
                tmp.write_text(json.dumps({"train": asdict(cfg), "network": self.net_config.to_dict(),
                                           "cache": self.cache.config.to_dict(), "world_size": self.world,
                                           "train_pairs": len(self.train_records),
                                           "val_pairs": len(self.val_records)}, indent=2) + "\n")
            self._trim_log()
        if not resumed:
            torch.manual_seed(cfg.seed + self.rank)  # restored from the checkpoint otherwise
        if self.main and not resumed and self.val_records:
            v = self.validate()
            self._log({"step": 0, "epoch": 0, "lr": self.optim.param_groups[0]["lr"], **v})
        loader = self._loader(self.train_records, batch_sampler=self.batches)
        bar = tqdm(total=total, initial=self.step, unit="step", disable=not (self.main and cfg.progress),
                   file=sys.stderr, desc="train")
        self.ddp.train()
        t0 = wall0 = time.perf_counter()
        seen, acc_n, acc = 0, 0, {}
        while self.step < total and self.epoch < cfg.epochs:
            self.batches.set_epoch(self.epoch, self.step_in_epoch)
            for batch in loader:
                out = self.train_step(batch)
                self.step += 1
                self.step_in_epoch += 1
                seen += batch["l"].shape[0] * self.world
                acc = {k: acc.get(k, 0) + v for k, v in out.items()}
                acc_n += 1
                bar.update(1)
                end_of_epoch = self.step_in_epoch == spe
                if end_of_epoch:
                    self.epoch, self.step_in_epoch = self.epoch + 1, 0
                    self.sched.step()
                if self.step % cfg.log_every == 0 or self.step == total or end_of_epoch:
                    means = {k: float(v) / acc_n for k, v in acc.items()}  # the only host sync of a step
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{means['loss']:.3f}", pairs_s=f"{rate:.1f}", refresh=False)
                    self._log({"step": self.step, "epoch": self.epoch, "lr": self.optim.param_groups[0]["lr"],
                               **means, "pairs_per_s": rate, "wall_s": time.perf_counter() - wall0})
                    seen, acc_n, acc, t0 = 0, 0, {}, time.perf_counter()
                val_now = (cfg.val_every and self.step % cfg.val_every == 0) or (end_of_epoch and not cfg.val_every)
                if val_now and self.step < total:
                    v = self.validate()
                    if v:
                        self._log({"step": self.step, "epoch": self.epoch, "lr": self.optim.param_groups[0]["lr"], **v})
                if self.step % cfg.checkpoint_every == 0 and self.step < total:
                    self._barrier_save()
                if self.step >= total or end_of_epoch:
                    break
        bar.close()
        final = self.validate()
        if final:
            self._log({"step": self.step, "epoch": self.epoch, "lr": self.optim.param_groups[0]["lr"], **final})
        self._barrier_save(final=True)
        return {"step": self.step, "epoch": self.epoch, **final}

    def _barrier_save(self, final: bool = False) -> None:
        if self.main:
            self._save(final)
        if self.distributed:
            dist.barrier()


def train(config: TrainConfig) -> dict[str, Any]:
    """Run (or resume) one training run; see :class:`Trainer`."""
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.cache.close()
        if trainer.distributed and dist.is_initialized():
            dist.destroy_process_group()
