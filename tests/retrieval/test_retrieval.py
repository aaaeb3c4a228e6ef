"""Reference retrieval: descriptors, store, FAISS kinds, two-stage search, resumable builds, CLI.

Real photos from ../shared/data and the real pretrained VGG-19 slice (relu3_1, the deepest level it
covers); each operation is checked against an independent reference (numpy loops, brute force, hashlib,
a known transform whose right answer is known).
"""

from __future__ import annotations

import hashlib
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

from exemplar_color.errors import ConfigMismatchError, ExemplarColorError
from exemplar_color.io import list_images
from exemplar_color.retrieval import (DescriptorConfig, EmptyGalleryError, GalleryIndex, IndexMismatchError,
                                      PartialBuildError, RankWeights, rerank_scores, resolve_kind)
from exemplar_color.retrieval.descriptors import dequantise_unit, luminance_histograms, quantise_unit
from exemplar_color.retrieval.index import build_faiss
from exemplar_color.retrieval.synthetic import clustered_vectors, near_duplicate

LEVEL = "relu3_1"  # the deepest level the real slice weights cover
SIZE = 112
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _gallery(data_dir: Path, dest: Path, n_sample: int, n_val: int) -> Path:
    """A gallery folder of real photos (symlinks, two sub-folders, as users' galleries are nested)."""
    dest.mkdir(parents=True)
    for sub, src, n in (("sample", "imagenet-sample", n_sample), ("val", "imagenet-val-227", n_val)):
        (dest / sub).mkdir()
        files = list_images(data_dir / src)
        step = max(1, len(files) // max(n, 1))
        spread = files[::step]
        spread += [f for f in files if f not in set(spread)]
        picked = []
        for f in spread:  # a gallery holds colour photos only
            if len(picked) == n:
                break
            if _colour(f):
                picked.append(f)
        for f in picked:
            (dest / sub / f.name).symlink_to(f)
    return dest


def _colour(path: Path) -> bool:
    from exemplar_color.layout import tensor_view
    from exemplar_color.working import is_gray

    with Image.open(path) as im:
        im.thumbnail((128, 128))
        return im.mode != "L" and not is_gray(tensor_view(np.asarray(im.convert("RGB"), np.float32) / 255))


def _config(size: int = SIZE) -> DescriptorConfig:
    return DescriptorConfig(level=LEVEL, size=size, variant="torchvision")


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir, tv_weights):
    """A 120-image real gallery indexed once with the exact (flat) index."""
    torch.set_num_threads(1)
    root = _gallery(data_dir, tmp_path_factory.mktemp("g") / "gallery", 60, 60)
    index = GalleryIndex.build(root, tmp_path_factory.mktemp("i") / "gallery.index", config=_config(),
                               weights=tv_weights, batch=16, checkpoint=64, progress=False)
    return root, index


# ---------------------------------------------------------------- descriptors
def test_luminance_histograms_match_a_loop():
    rng = np.random.default_rng(0)
    lum = rng.uniform(0, 100, (2, 1, 30, 23)).astype(np.float32)
    lum[0, 0, :5, :5] = 100.0  # the top edge belongs to the last bin
    got = luminance_histograms(torch.from_numpy(lum), grid=7, bins=10).numpy()
    for b in range(2):
        for r in range(7):
            for c in range(7):
                ys = [y for y in range(30) if y * 7 // 30 == r]
                xs = [x for x in range(23) if x * 7 // 23 == c]
                cell = lum[b, 0][np.ix_(ys, xs)].ravel()
                ref = np.histogram(cell, bins=10, range=(0, 100))[0] / cell.size
                np.testing.assert_allclose(got[b, r * 7 + c], ref, atol=1e-6)


def test_grid_quantisation_keeps_cosines():
    rng = np.random.default_rng(1)
    x = np.abs(rng.standard_normal((200, 256))).astype(np.float32) * (rng.uniform(size=(200, 256)) < 0.3)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = dequantise_unit(quantise_unit(x))
    assert quantise_unit(x).dtype == np.uint8
    assert np.min(np.sum(x * y, axis=1)) > 0.9999
    pair = x[:100] @ x[100:].T
    err = np.abs(pair - y[:100] @ y[100:].T)
    assert err.mean() < 1e-3 and err.max() < 5e-3


def test_rerank_scores_match_the_published_formula():
    rng = np.random.default_rng(2)
    t = dequantise_unit(rng.integers(0, 255, (49, 32)).astype(np.uint8))
    c = dequantise_unit(rng.integers(0, 255, (5, 49, 32)).astype(np.uint8))
    th = rng.dirichlet(np.ones(10), 49).astype(np.float32)
    ch = rng.dirichlet(np.ones(10), (5, 49)).astype(np.float32)
    cls = np.array([3, 4, -1, 3, 7], np.int16)
    got = rerank_scores(t, th, c, ch, weights=RankWeights(hist=0.25, class_prior=0.1), t_class=3, c_class=cls)
    for n in range(5):
        best = [max(range(49), key=lambda j: float(t[i] @ c[n, j])) for i in range(49)]
        d0 = 1 - np.mean([t[i] @ c[n, best[i]] for i in range(49)])
        d1 = np.mean([0.5 * np.abs(th[i] - ch[n, best[i]]).sum() for i in range(49)])
        want = d0 + 0.25 * d1 + 0.1 * (cls[n] not in (3, -1))
        assert got["score"][n] == pytest.approx(want, abs=1e-5)
        assert got["dist0"][n] == pytest.approx(d0, abs=1e-5)


# ---------------------------------------------------------------- index and store
def test_exact_index_equals_brute_force(built):
    _, index = built
    x = index.store.global_descriptors()
    q = clustered_vectors(20, x.shape[1], clusters=4, seed=3)
    q = np.concatenate([q, x[::12]])
    sims, ids = index.faiss.search(q, 10)
    ref = q @ x.T
    ref_ids = np.argsort(-ref, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(sims, np.take_along_axis(ref, ref_ids, 1), atol=1e-5)


@pytest.mark.parametrize("kind,floor", [("ivf", 1.0), ("hnsw", 0.95), ("ivfpq", 0.1), ("IVF16,SQ8", 0.9)])
def test_index_kinds_share_one_interface(kind, floor):
    data = clustered_vectors(10050, 64, clusters=64, seed=4)
    x, q = data[:10000], data[10000:]  # queries from the same distribution, not in the index
    # every inverted list probed: IVF-Flat must then be exact (recall 1); approximate kinds reach a floor
    spec = resolve_kind(kind, 64, len(x), {"nprobe": 256, "efSearch": 128})
    index = build_faiss(spec, x)
    _, ids = index.search(q, 10)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
    assert recall >= floor, (kind, spec.factory, recall)


def test_bad_factory_string_is_a_clear_error():
    with pytest.raises(ValueError, match="FAISS factory"):
        resolve_kind("NotAnIndex42", 256, 1000)


def test_store_and_manifest_record_what_was_built(built):
    root, index = built
    m = json.loads((index.path / "manifest.json").read_text())
    assert m["count"] == len(index) == 120
    assert m["descriptor"]["level"] == LEVEL and m["descriptor"]["dim"] == 256 and m["index"]["kind"] == "flat"
    assert m["backbone"]["variant"] == "torchvision" and m["backbone"]["levels"] == [LEVEL]
    assert {"exemplar_color", "faiss", "torch", "h5py"} <= set(m["versions"])
    assert not (index.path / ".build").exists()
    for i in (0, 77, 119):
        rel = index.store.paths[i]
        assert not os.path.isabs(rel) and (root / rel).is_file()
        assert index.store.sha256[i].decode() == hashlib.sha256((root / rel).read_bytes()).hexdigest()
        with Image.open(root / rel) as im:
            assert tuple(index.store.sizes[i]) == im.size
    g = index.store.global_descriptors()
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- search
def test_near_duplicates_come_back_top1(built):
    root, index = built
    rng = np.random.default_rng(5)
    ids = rng.choice(len(index.store), 40, replace=False)
    queries = [near_duplicate(root / index.store.paths[i], rng)[0] for i in ids]
    results = index.search_batch(queries, k=5, candidates=50)
    top1 = np.mean([r[0].id == i for r, i in zip(results, ids)])
    assert top1 >= 0.95, top1
    r = results[0][0]
    assert set(r.parts) == {"global", "dist0", "dist1", "class"} and Path(r.path).is_file()
    assert r.score == pytest.approx(r.parts["dist0"] + 0.25 * r.parts["dist1"], abs=1e-5)
    assert [x.score for x in results[0]] == sorted(x.score for x in results[0])


def test_search_accepts_paths_and_colour_images_alike(built):
    root, index = built
    path = root / index.store.paths[3]
    by_path = index.search(path, k=3)
    by_array = index.search(np.asarray(Image.open(path).convert("RGB")), k=3)
    assert by_path[0].id == 3 and [r.id for r in by_path] == [r.id for r in by_array]
    assert by_path[0].score == pytest.approx(0.0, abs=1e-3)


def test_mismatched_backbone_is_refused(built, caffe_weights):
    _, index = built
    with pytest.raises(IndexMismatchError, match="relu3_1"):
        GalleryIndex.open(index.path, level="relu2_1")
    with pytest.raises(IndexMismatchError, match="variant"):
        GalleryIndex.open(index.path, variant="caffe")
    with pytest.raises(IndexMismatchError, match="sha256"):
        GalleryIndex.open(index.path, weights=caffe_weights)  # another backbone's weights, same level
    err = pytest.raises(IndexMismatchError, GalleryIndex.open, index.path, expect=_config(size=64)).value
    assert isinstance(err, ExemplarColorError) and isinstance(err, ConfigMismatchError) and "size" in str(err)


# ---------------------------------------------------------------- building
def test_corrupt_images_are_logged_and_skipped(tmp_path, data_dir, tv_weights, caplog):
    root = _gallery(data_dir, tmp_path / "g", 3, 0)
    good = list_images(root)[0].read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "notes.jpg").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    with caplog.at_level("WARNING", logger="exemplar_color.retrieval"):
        index = GalleryIndex.build(root, tmp_path / "idx", config=_config(64), weights=tv_weights, progress=False)
    assert len(index) == 3
    bad = {p for p, _ in index.build_report.failures}
    assert bad == {"truncated.jpg", "notes.jpg", "empty.png"}
    assert len(json.loads((index.path / "manifest.json").read_text())["failures"]) == 3
    assert "truncated.jpg" in caplog.text


def test_empty_gallery_is_a_clear_error(tmp_path, tv_weights):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyGalleryError, match="no images found"):
        GalleryIndex.build(tmp_path / "empty", tmp_path / "idx", config=_config(64), weights=tv_weights)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_text("nope")
    with pytest.raises(EmptyGalleryError, match="none of the 1 images"):
        GalleryIndex.build(tmp_path / "junk", tmp_path / "idx2", config=_config(64), weights=tv_weights,
                           progress=False)


_BUILD_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from exemplar_color.retrieval import DescriptorConfig, GalleryIndex
GalleryIndex.build(sys.argv[1], sys.argv[2], config=DescriptorConfig(level="relu3_1", size=64, variant="torchvision"),
                   weights=sys.argv[3], batch=2, checkpoint=4, progress=False)
"""


@pytest.mark.slow  # a subprocess killed with SIGKILL
def test_build_killed_with_sigkill_resumes_without_recomputing(tmp_path, data_dir, tv_weights):
    root = _gallery(data_dir, tmp_path / "g", 40, 40)
    out = tmp_path / "idx"
    proc = subprocess.Popen([sys.executable, "-c", _BUILD_SCRIPT, str(root), str(out), str(tv_weights)], env=ENV)
    parts = out / ".build"
    deadline = time.monotonic() + 60
    while len(list(parts.glob("part-*.h5"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the build finished before it could be killed"
    done = sorted(parts.glob("part-*.h5"))
    assert 2 <= len(done) < 20
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done}
    with pytest.raises(PartialBuildError, match="--resume"):
        GalleryIndex.open(out)
    with pytest.raises(PartialBuildError, match="--resume"):
        GalleryIndex.build(root, out, config=_config(64), weights=tv_weights)
    with pytest.raises(IndexMismatchError):  # resuming with another configuration is refused
        GalleryIndex.build(root, out, config=_config(96), weights=tv_weights, resume=True)
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done} == before  # untouched
    index = GalleryIndex.build(root, out, config=_config(64), weights=tv_weights, resume=True, batch=8,
                               progress=False)
    rep = index.build_report
    assert rep.reused == 4 * len(done) and rep.computed == 80 - rep.reused and len(index) == 80
    assert index.store.paths == [str(p.relative_to(root)) for p in list_images(root)]
    # resumed rows equal a direct description of the same images
    ids = [0, 5, 79]
    direct = index.describe([root / index.store.paths[i] for i in ids])
    np.testing.assert_allclose(index.store.global_descriptors()[ids], direct.global_, atol=1e-4)
    assert index.search(root / index.store.paths[5], k=1)[0].id == 5


def test_add_and_remove_missing(tmp_path, data_dir, tv_weights):
    root = _gallery(data_dir, tmp_path / "g", 6, 0)
    index = GalleryIndex.build(root, tmp_path / "idx", config=_config(64), weights=tv_weights, kind="hnsw",
                               progress=False)
    new = root / "new.jpg"
    shutil.copy(list_images(data_dir / "kodak")[0], new)
    rep = index.add([new], progress=False)
    assert rep.computed == 1 and len(index) == 7
    reopened = GalleryIndex.open(index.path, weights=tv_weights)
    assert reopened.search(new, k=1)[0].relpath == "new.jpg"
    assert index.add([new], progress=False).reused == 1  # same content: not added twice
    gone = root / index.store.paths[0]
    gone.unlink()
    assert reopened.remove_missing() == [index.store.paths[0]]
    reopened = GalleryIndex.open(index.path, weights=tv_weights)
    assert len(reopened) == 6 and all(r.id != 0 for r in reopened.search(new, k=6))
    assert len(list(index.path.glob("index-*.faiss"))) <= 2


# ---------------------------------------------------------------- CLI
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exemplar_color.cli.main", "index", *args], env=ENV,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # the command line in subprocesses
def test_cli_end_to_end(tmp_path, data_dir, tv_weights, capsys):
    root = _gallery(data_dir, tmp_path / "g", 8, 4)
    out = tmp_path / "idx"
    common = ["--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision", "--threads", "1"]
    r = _cli("build", str(root), "--index", str(out), "--level", LEVEL, "--size", "64", "--workers", "1",
             "--kind", "ivf", "--nprobe", "4", "--json", *common)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["count"] == 12 and rep["computed"] == 12 and rep["kind"].startswith("IVF")
    target = root / "sample" / sorted(os.listdir(root / "sample"))[2]
    gray = tmp_path / "target.png"
    Image.open(target).convert("L").save(gray)
    r = _cli("query", str(gray), "--index", str(out), "-k", "3", "--json")  # weights found via the manifest
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"]
    assert len(res) == 3 and res[0]["path"] == str(target) and res[0]["score"] <= res[1]["score"]

    # the rest in-process (same entry point, without paying the interpreter start-up each time)
    from exemplar_color.cli.main import main

    capsys.readouterr()
    assert main(["index", "query", str(gray), "--index", str(out), "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[2] == str(target)
    # known errors: one line on stderr, exit 1; usage errors exit 2
    (tmp_path / "none").mkdir()
    assert main(["index", "build", str(tmp_path / "none"), "--index", str(tmp_path / "idx2"), *common]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no images" in err and len(err.strip().splitlines()) == 1
    assert main(["index", "build", str(root), "--index", str(out), "--level", LEVEL, *common]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["index", "info", "--index", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 12
    assert main(["index", "info", "--index", str(out)]) == 0
    assert "count: 12" in capsys.readouterr().out.splitlines()
    with pytest.raises(SystemExit) as e:
        main(["index", "query"])
    assert e.value.code == 2


def test_rank_sharded_build_merges_to_the_same_index(tmp_path, data_dir, tv_weights):
    root = _gallery(data_dir, tmp_path / "g", 5, 3)
    kw = dict(config=_config(64), weights=tv_weights, checkpoint=2, progress=False)
    assert GalleryIndex.build(root, tmp_path / "idx", rank=1, world=2, **kw) is None  # writes chunks 1, 3
    assert len(list((tmp_path / "idx" / ".build").glob("part-*.h5"))) == 2
    sharded = GalleryIndex.build(root, tmp_path / "idx", rank=0, world=2, **kw)  # chunks 0, 2, then merge
    single = GalleryIndex.build(root, tmp_path / "one", **kw)
    assert sharded.store.paths == single.store.paths and len(sharded) == 8
    np.testing.assert_allclose(sharded.store.global_descriptors(), single.store.global_descriptors(), atol=1e-5)


def test_centred_histograms_ignore_exposure():
    rng = np.random.default_rng(6)
    lum = torch.from_numpy(rng.uniform(20, 70, (1, 1, 28, 28)).astype(np.float32))
    a = luminance_histograms(lum, centre=True)
    np.testing.assert_allclose(luminance_histograms(lum + 17.0, centre=True), a, atol=1e-6)
    assert not torch.allclose(luminance_histograms(lum + 17.0), luminance_histograms(lum))


# ---------------------------------------------------------------- on-disk inverted lists
def test_on_disk_ivf_finds_what_the_flat_index_finds_and_moves_with_its_folder(built, tmp_path, tv_weights, capfd):
    """A gallery larger than RAM: the IVF lists in a file beside the index, the chunks kept as store shards.
    With every list probed IVF-Flat is exact, so a query must return the flat index's neighbours."""
    from exemplar_color.retrieval.ondisk import is_ondisk

    root, flat = built
    out = tmp_path / "big.index"
    ondisk = GalleryIndex.build(root, out, config=_config(), weights=tv_weights, batch=16, checkpoint=32,
                                kind="IVF4,Flat", params={"nprobe": 4}, progress=False, on_disk=True)
    m = json.loads((out / "manifest.json").read_text())
    assert m["index"]["ivfdata"] == "index-000001.ivfdata" and (out / m["index"]["ivfdata"]).stat().st_size > 0
    assert len(m["shards"]) == 4 and m["count"] == len(flat) == 120 and not (out / ".build").exists()
    assert is_ondisk(ondisk.faiss) and not is_ondisk(flat.faiss)
    targets = [root / "sample" / sorted(os.listdir(root / "sample"))[i] for i in (3, 17)]
    want = [[(r.id, round(r.score, 5)) for r in flat.search(t, k=5)] for t in targets]
    assert [[(r.id, round(r.score, 5)) for r in ondisk.search(t, k=5)] for t in targets] == want
    moved = tmp_path / "elsewhere" / "big.index"  # the lists are found beside the index, not at the build's path
    moved.parent.mkdir()
    shutil.move(str(out), moved)
    capfd.readouterr()
    again = GalleryIndex.open(moved, weights=tv_weights)
    assert [[(r.id, round(r.score, 5)) for r in again.search(t, k=5)] for t in targets] == want
    assert capfd.readouterr().out == ""  # FAISS's own prints kept off stdout, where --json results go
    with pytest.raises(ExemplarColorError, match="on disk.*rebuild"):
        again.add(targets[0])
    with pytest.raises(ValueError, match="--on-disk.*IVF"):
        GalleryIndex.build(root, tmp_path / "flat.index", config=_config(), weights=tv_weights, kind="flat",
                           progress=False, on_disk=True)
    assert not (tmp_path / "flat.index" / "manifest.json").exists()
