"""Training pairs, the pair cache, losses and the trainer, on real images with the real VGG-19 slices."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from exemplar_color.backbone import VGG19Features
from exemplar_color.cli.main import main as cli
from exemplar_color.colorization.checkpoint import load_model
from exemplar_color.colorization.network import ColorizationNetConfig
from exemplar_color.color import rgb_to_lab
from exemplar_color.correspondence import Matcher
from exemplar_color.errors import ConfigMismatchError, ExemplarColorError
from exemplar_color.training.cache import CacheDataset, CacheError, PairCache, build_cache, decode
from exemplar_color.training.losses import PerceptualLoss, chrominance_loss, saturation_loss
from exemplar_color.training.pairs import (FirstOf, ManifestError, NearestDescriptor, Pair, PairManifest, SameClass,
                                           make_pairs)
from exemplar_color.training.images import load_square
from exemplar_color.training.trainer import TrainConfig, Trainer, train

from conftest import SLICE_LEVELS

SIZE = 64
N_GOOD = 8  # real image pairs in the test cache (6 train, 2 val)
SAMPLE = ["n01440764_tench", "n01530575_brambling", "n01608432_kite", "n01644373_tree_frog",
          "n01744401_rock_python", "n01774750_tarantula", "n01843383_toucan", "n01910747_jellyfish",
          "n02085620_Chihuahua"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_dir, tv_weights):
    """A root with real images (plus one truncated JPEG), a manifest with a missing and a corrupt pair,
    and a cache built through the CLI: the shared setup of this module (built once, ~10 s)."""
    base = tmp_path_factory.mktemp("training")
    root = base / "images"
    root.mkdir()
    src = data_dir / "imagenet-sample"
    names = []
    for stem in SAMPLE:
        hits = sorted(src.glob(stem + ".*"))
        if hits:
            shutil.copy(hits[0], root / hits[0].name)
            names.append(hits[0].name)
    assert len(names) >= N_GOOD + 1, names
    (root / "broken.jpg").write_bytes((root / names[0]).read_bytes()[:600])  # truncated JPEG
    pairs = [Pair(names[i], names[i + 1], "val" if i >= N_GOOD - 2 else "train") for i in range(N_GOOD)]
    pairs += [Pair("missing.jpg", names[0]), Pair(names[1], "broken.jpg")]
    PairManifest(root, pairs).save(base / "pairs.csv")
    rc = cli(["cache", "build", "--pairs", str(base / "pairs.csv"), "--root", str(root), "--out", str(base / "cache"),
              "--size", str(SIZE), "--levels", ",".join(SLICE_LEVELS), "--vgg-weights", str(tv_weights),
              "--variant", "torchvision", "--shard-size", "4", "--batch-size", "4", "--device", "cpu", "--json"])
    assert rc == 0
    return base


def _cfg(base: Path, out: Path, tv_weights: Path, **kw) -> TrainConfig:
    settings = dict(pairs=str(base / "pairs.csv"), cache=str(base / "cache"), out=str(out), epochs=2, batch_size=2,
                    perceptual_level="relu3_1", vgg_weights=str(tv_weights), width=0.125, checkpoint_every=3,
                    num_workers=0, log_every=1, progress=False)
    settings.update(kw)
    return TrainConfig(**settings)


# ----------------------------------------------------------------------------- manifests and pairing


class TestManifest:
    def test_csv_and_json_round_trip(self, tmp_path):
        m = PairManifest(tmp_path, [Pair("a/x.jpg", "b/y.png"), Pair("c.jpg", "a/x.jpg", "val")])
        for name in ("p.csv", "p.json"):
            back = PairManifest.load(m.save(tmp_path / name))
            assert back.pairs == m.pairs and back.root == tmp_path.resolve()
        assert m.split("val") == [1]

    def test_json_root_and_hand_written_csv(self, tmp_path):
        (tmp_path / "sub").mkdir()
        (tmp_path / "m.json").write_text(json.dumps({"root": "sub", "pairs": [{"target": "t.jpg",
                                                                              "reference": "r.jpg"}]}))
        assert PairManifest.load(tmp_path / "m.json").path("t.jpg") == (tmp_path / "sub" / "t.jpg").resolve()
        (tmp_path / "m.csv").write_text("target, reference\nt.jpg,r.jpg\n")  # no split column, spaces in header
        assert PairManifest.load(tmp_path / "m.csv").pairs == [Pair("t.jpg", "r.jpg", "train")]

    @pytest.mark.parametrize("text,match", [
        ("target,reference\n/etc/passwd,a.jpg\n", "absolute"),
        ("target,reference\n../outside.jpg,a.jpg\n", "outside the root"),
        ("target,reference\na/../../x.jpg,a.jpg\n", "outside the root"),
        ("tgt,ref\na.jpg,b.jpg\n", "header"),
        ("target,reference\n", "no pairs"),
        ("target,reference,split\na.jpg,b.jpg,test\n", "split"),
        ("target,reference\na.jpg\n", "lacks"),
    ])
    def test_bad_manifests_refused(self, tmp_path, text, match):
        (tmp_path / "m.csv").write_text(text)
        with pytest.raises(ManifestError, match=match):
            PairManifest.load(tmp_path / "m.csv")

    def test_missing_manifest(self, tmp_path):
        with pytest.raises(ManifestError, match="not found"):
            PairManifest.load(tmp_path / "none.csv")


class TestPairing:
    def test_same_class(self, tmp_path):
        paths = [tmp_path / f"{i}.jpg" for i in range(5)]
        labels = {"0.jpg": "a", "1.jpg": "b", "2.jpg": "a", "3.jpg": "a", "4.jpg": "c"}
        refs = SameClass(labels)(paths)
        for i, r in enumerate(refs):
            if labels[f"{i}.jpg"] == "a":
                assert r != i and labels[f"{r}.jpg"] == "a"
            else:
                assert r is None  # a class of one has no same-class reference

    def test_nearest_descriptor_finds_the_mirrored_copy(self, tmp_path, data_dir, vgg_slices):
        src = sorted((data_dir / "imagenet-sample").glob("n015*.JPEG"))[:4]
        for p in src:
            shutil.copy(p, tmp_path / p.name)
        img = Image.open(src[0])
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "mirror.png")
        paths = sorted(tmp_path.iterdir())
        refs = NearestDescriptor(vgg_slices, size=64)(paths)
        i0, im = paths.index(tmp_path / src[0].name), paths.index(tmp_path / "mirror.png")
        assert refs[i0] == im and refs[im] == i0
        assert all(r != i for i, r in enumerate(refs))

    def test_make_pairs_chains_rules_and_holds_out(self, tmp_path, data_dir, vgg_slices):
        src = sorted((data_dir / "imagenet-sample").glob("n016*.JPEG"))[:6]
        for p in src:
            shutil.copy(p, tmp_path / p.name)
        labels = {src[0].name: "x", src[1].name: "x"}
        rule = FirstOf([SameClass(labels), NearestDescriptor(vgg_slices, size=64)])
        m = make_pairs(tmp_path, [p.name for p in src], rule, val_fraction=0.34, seed=1)
        assert len(m) == 6 and len(m.split("val")) == 2
        by_target = {p.target: p.reference for p in m.pairs}
        assert by_target[src[0].name] == src[1].name and by_target[src[1].name] == src[0].name


# ----------------------------------------------------------------------------- the cache


class TestCache:
    def test_bad_pairs_reported_skipped_counted(self, workdir):
        c = PairCache(workdir / "cache", levels=SLICE_LEVELS, size=SIZE)
        assert len(c) == N_GOOD
        reasons = sorted(r for _, r in c.failures)
        assert len(reasons) == 2
        assert "missing.jpg" in reasons[1] and "no such file" in reasons[1]
        assert "broken.jpg" in reasons[0] and "corrupt" in reasons[0]

    def test_records_match_the_matcher(self, workdir, vgg_slices):
        c = PairCache(workdir / "cache")
        rec = c.read(0)
        assert rec["l"].dtype == np.float16 and rec["similarity"].dtype == np.uint8
        assert rec["similarity"].shape == (2 * len(SLICE_LEVELS), SIZE, SIZE)
        t, r, _ = c.pairs[c.pair_index[0]]
        root = Path(c.plan["root"])
        tl = rgb_to_lab(load_square(root / t, SIZE)[0][None])
        rl = rgb_to_lab(load_square(root / r, SIZE)[0][None])
        m = Matcher(vgg_slices, precision="float32").match(tl[:, :1], rl)  # the cache matches in float32
        x = decode({k: torch.from_numpy(v)[None] for k, v in rec.items()})
        assert torch.allclose(x["l"], tl[:, :1], atol=0.05)
        assert torch.allclose(x["ab"], tl[:, 1:], atol=0.1)
        assert torch.allclose(x["warped_ab"], m.warped_ab, atol=0.1)
        assert torch.allclose(x["cycle_ab"], m.cycle_warp(tl[:, 1:]), atol=0.1)
        assert (x["similarity"] - m.similarity.clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-6

    def test_other_levels_or_backbone_refused(self, workdir):
        with pytest.raises(ConfigMismatchError, match="levels"):
            PairCache(workdir / "cache", levels=("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1"))
        with pytest.raises(ConfigMismatchError, match="variant"):
            PairCache(workdir / "cache", variant="caffe")
        with pytest.raises(ConfigMismatchError, match="size"):
            PairCache(workdir / "cache", size=128)

    def test_build_into_a_cache_of_another_config_refused(self, workdir, tv_weights):
        m = PairManifest.load(workdir / "pairs.csv", root=workdir / "images")
        with pytest.raises(ConfigMismatchError, match="size"):
            build_cache(m, workdir / "cache", levels=SLICE_LEVELS, size=32, vgg_weights=tv_weights, shard_size=4,
                        variant="torchvision")

    @pytest.mark.parametrize("key,today", [("context_border", 16), ("coherence_margin", 0.02)])
    def test_cache_of_an_older_matcher_not_extended(self, workdir, tv_weights, tmp_path, key, today):
        """A cache whose records came from an older matcher (built before the context border, or before the
        coherence margin, when its plan did not record them) is never extended with records of today's
        matcher: the difference is named."""
        copy = tmp_path / "cache"
        shutil.copytree(workdir / "cache", copy)
        plan = json.loads((copy / "cache.json").read_text())
        assert plan["config"][key] == today
        del plan["config"][key]
        (copy / "cache.json").write_text(json.dumps(plan))
        m = PairManifest.load(workdir / "pairs.csv", root=workdir / "images")
        with pytest.raises(ConfigMismatchError, match=key):
            build_cache(m, copy, levels=SLICE_LEVELS, size=SIZE, vgg_weights=tv_weights, shard_size=4,
                        variant="torchvision", progress=False)

    def test_resume_rebuilds_only_missing_shards(self, workdir, tv_weights, tmp_path):
        copy = tmp_path / "cache"
        shutil.copytree(workdir / "cache", copy)
        (copy / "shard-00001.h5").unlink()
        with pytest.raises(CacheError, match="incomplete"):
            PairCache(copy)
        (copy / "shard-00002.h5").write_bytes(b"garbage")  # a damaged shard is rebuilt too
        m = PairManifest.load(workdir / "pairs.csv", root=workdir / "images")
        rep = build_cache(m, copy, levels=SLICE_LEVELS, size=SIZE, vgg_weights=tv_weights, shard_size=4,
                          variant="torchvision",
                          batch_size=4, progress=False)
        assert (rep.parts_present, rep.parts_built) == (1, 2)
        a, b = PairCache(workdir / "cache"), PairCache(copy)
        assert a.pair_index == b.pair_index
        for i in range(len(a)):
            assert all(np.array_equal(a.read(i)[k], b.read(i)[k]) for k in ("l", "warped_ab", "similarity"))

    def test_cache_info_cli(self, workdir, capsys):
        assert cli(["cache", "info", str(workdir / "cache"), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["records"] == N_GOOD and info["failed"] == 2 and info["levels"] == list(SLICE_LEVELS)


# ----------------------------------------------------------------------------- losses


def test_losses(vgg_slices):
    torch.manual_seed(0)
    l = torch.rand(2, 1, 32, 32) * 100
    ab = torch.randn(2, 2, 32, 32) * 20
    assert chrominance_loss(ab, ab) == 0
    assert torch.isclose(chrominance_loss(ab + 3, ab), torch.tensor(2.5))  # smooth-L1, beta 1: |d| - 0.5
    perc = PerceptualLoss(vgg_slices, "relu3_1")
    assert perc(l, ab, ab).item() < 1e-8
    pred = (ab + torch.randn_like(ab) * 10).requires_grad_()
    loss = perc(l, pred, ab)
    loss.backward()
    assert loss > 0 and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="relu5_1"):
        PerceptualLoss(vgg_slices, "relu5_1")


def test_perceptual_loss_weighs_the_same_with_either_backbone_convention(tv_weights, caffe_weights):
    """The real Caffe and torchvision VGG-19 slices give perceptual terms of the same order, so the
    published alpha balances the branches with either (before: Caffe's was ~3000x larger)."""
    torch.manual_seed(0)
    l = torch.rand(2, 1, 48, 48) * 60 + 20
    ab, pred = torch.randn(2, 2, 48, 48) * 20, torch.randn(2, 2, 48, 48) * 20
    tv = PerceptualLoss(VGG19Features(["relu3_1"], weights=tv_weights), "relu3_1")(l, pred, ab)
    caffe_net = VGG19Features(["relu3_1"], weights=caffe_weights, variant="caffe")
    assert 50 < caffe_net.input_gain < 65
    caffe = PerceptualLoss(caffe_net, "relu3_1")(l, pred, ab)
    assert 0.2 < float(caffe / tv) < 5, (float(caffe), float(tv))


def test_saturation_loss_pushes_washed_out_colours_outwards():
    """Zero for the truth's own colourfulness wherever it sits; a washed-out prediction is pulled outwards."""
    torch.manual_seed(0)
    truth = torch.randn(2, 2, 16, 16) * 20
    assert saturation_loss(truth.flip(-1), truth).item() < 1e-3  # same colours elsewhere: no penalty
    pale = (truth * 0.5).requires_grad_()
    loss = saturation_loss(pale, truth)
    loss.backward()
    assert loss.item() > 5
    assert (pale.grad * pale.detach()).sum() < 0  # gradient descent increases |ab|


# ----------------------------------------------------------------------------- the trainer


def test_loss_decreases(workdir, tv_weights, tmp_path):
    trainer = Trainer(_cfg(workdir, tmp_path / "run", tv_weights, lr=1e-3, batch_size=4))
    batch = next(iter(torch.utils.data.DataLoader(CacheDataset(trainer.cache, trainer.train_records[:4]),
                                                  batch_size=4)))
    losses = [trainer.train_step(batch)["loss"].item() for _ in range(12)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_reference_branch_terms_join_the_loss(workdir, tv_weights, tmp_path):
    """The optional real-reference terms add to the published loss on the same batch; off by default."""
    losses = {}
    for name, extra in {"published": {}, "both": {"reference_chroma": 1.0, "saturation": 1.0}}.items():
        torch.manual_seed(0)
        trainer = Trainer(_cfg(workdir, tmp_path / name, tv_weights, batch_size=4, **extra))
        batch = next(iter(torch.utils.data.DataLoader(CacheDataset(trainer.cache, trainer.train_records[:4]),
                                                      batch_size=4)))
        losses[name] = trainer.train_step(batch)
    assert torch.isclose(losses["published"]["chroma"], losses["both"]["chroma"])
    assert losses["both"]["loss"] > losses["published"]["loss"] + 1.0


def _train_cmd(base: Path, out: Path, tv_weights: Path) -> list[str]:
    return [sys.executable, "-m", "exemplar_color.cli.main", "train", "--pairs", str(base / "pairs.csv"),
            "--cache", str(base / "cache"), "--out", str(out), "--epochs", "3", "--batch-size", "2",
            "--width", "0.125", "--perceptual-level", "relu3_1", "--vgg-weights", str(tv_weights),
            "--checkpoint-every", "2", "--workers", "0", "--threads", "1", "--log-every", "1"]


@pytest.mark.slow  # three training subprocesses, one killed with SIGKILL
def test_sigkill_and_resume_gives_identical_weights(workdir, tv_weights, tmp_path):
    """3 epochs of 3 steps; kill -9 right after the step-4 checkpoint (mid-epoch 2), resume, compare."""
    ref = tmp_path / "uninterrupted"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_train_cmd(workdir, ref, tv_weights), check=True, env=env, capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(workdir, run, tv_weights), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (run / "checkpoints" / "step-00000004.safetensors").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model.safetensors").exists()
    done = subprocess.run(_train_cmd(workdir, run, tv_weights), check=True, env=env, capture_output=True, text=True)
    assert "resumed" in done.stderr
    a, b = load_file(ref / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = load_file(ref / "checkpoints" / "step-00000009.safetensors"), load_file(
        run / "checkpoints" / "step-00000009.safetensors")
    assert all(torch.equal(ca[k], cb[k]) for k in ca if k.startswith("optim."))  # Adam moments too
    with open(run / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["loss"]]
    assert steps == sorted(set(steps)) == list(range(1, 10))  # no duplicate rows from the killed run
    model = load_model(run / "model.safetensors", ColorizationNetConfig(levels=SLICE_LEVELS))
    assert model.config.size == SIZE and model.config.width == 0.125
    result = dict(ln.split(": ", 1) for ln in done.stdout.splitlines())  # the result on stdout, one line each
    assert int(result["step"]) == 9 and float(result["val_warped_l1"]) > 0


def test_trainer_refuses_foreign_pairs_and_changed_run(workdir, tv_weights, tmp_path):
    (tmp_path / "other.csv").write_text("target,reference\nn01440764_tench.JPEG,zzz.jpg\n")
    with pytest.raises(ConfigMismatchError, match="not in the cache"):
        Trainer(_cfg(workdir, tmp_path / "r", tv_weights, pairs=str(tmp_path / "other.csv")))
    train(_cfg(workdir, tmp_path / "r", tv_weights, max_steps=1, epochs=1))
    with pytest.raises(ConfigMismatchError, match="width"):
        train(_cfg(workdir, tmp_path / "r", tv_weights, width=0.25, epochs=1))
    with pytest.raises(ExemplarColorError, match="already holds a run"):
        train(_cfg(workdir, tmp_path / "r", tv_weights, resume=False))
    with pytest.raises(ExemplarColorError, match="batch size"):
        Trainer(_cfg(workdir, tmp_path / "r2", tv_weights, batch_size=64))


def test_best_checkpoint_is_the_lowest_held_out_error(workdir, tv_weights, tmp_path):
    """best.safetensors holds the model of the lowest val_ab_l1 seen, and it loads in the Colorizer."""
    import csv

    from exemplar_color import Colorizer
    from exemplar_color.colorization.checkpoint import read_metadata

    out = tmp_path / "run"
    Trainer(_cfg(workdir, out, tv_weights, epochs=3, lr=1e-3)).run()
    rows = [r for r in csv.DictReader(open(out / "metrics.csv")) if r["val_ab_l1"]]
    best = min(float(r["val_ab_l1"]) for r in rows)
    meta = read_metadata(out / "best.safetensors")
    assert abs(meta["train"]["val"]["val_ab_l1"] - best) < 1e-4 * max(1.0, best)  # the CSV rounds
    c = Colorizer(device="cpu", vgg_weights=tv_weights, model=out / "best.safetensors", size=64)
    assert c.head_name == "network"


# ----------------------------------------------------------------------------- references and augmentation


def test_references_mix_kinds_and_exclude_self_and_near_duplicates():
    from exemplar_color.training.references import ReferenceMix, choose_references

    rng = np.random.default_rng(0)
    n = 60
    g = rng.normal(size=(n, 16))
    g[1] = g[0] + 1e-4  # image 1 is a near-duplicate of image 0
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    classes = [str(i // 6) for i in range(n - 6)] + [None] * 6  # ten classes of six, six unlabelled photos
    retrieved = [list(np.argsort(-(g @ g[i]))) for i in range(n)]  # includes the image itself first
    refs = choose_references(classes, g, retrieved, per_target=3, seed=1)
    kinds = [k for chosen in refs for _, k in chosen]
    assert all(len(chosen) == 3 and len({j for j, _ in chosen}) == 3 for chosen in refs)
    assert all(j != i for i, chosen in enumerate(refs) for j, _ in chosen)
    assert all(j != 1 for j, _ in refs[0]) and all(j != 0 for j, _ in refs[1])
    assert {"retrieved", "same_class", "related_class"} == set(kinds)
    assert all(k == "retrieved" for chosen in refs[-6:] for _, k in chosen)  # no class: retrieval only
    for i, chosen in enumerate(refs[:-6]):
        for j, k in chosen:
            if k == "same_class":
                assert classes[j] == classes[i]
            if k == "related_class":
                assert classes[j] not in (classes[i], None)
            if k == "retrieved":
                assert j in [x for x in retrieved[i] if x != i][:ReferenceMix().top_k + 1]
    assert refs == choose_references(classes, g, retrieved, per_target=3, seed=1)  # seeded


def test_augment_moves_every_field_together_and_identity_is_exact():
    from exemplar_color.training.augment import augment

    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    fields = {"a": x, "b": x.clone() * 2, "c": x[:, :1].clone()}
    out = augment(fields)
    assert torch.allclose(out["b"], out["a"] * 2, atol=1e-5) and torch.allclose(out["c"], out["a"][:, :1])
    assert not torch.allclose(out["a"], x)
    same = augment({"a": x}, min_scale=1.0, flip=0.0)["a"]
    assert torch.allclose(same, x, atol=1e-5)
    mirrored = augment({"a": x}, min_scale=1.0, flip=1.0)["a"]
    assert torch.allclose(mirrored, x.flip(-1), atol=1e-5)
