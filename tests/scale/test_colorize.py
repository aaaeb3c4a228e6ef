"""``colorize --engine ray`` against a real local Ray of 2 CPUs: the folder run's outputs, names, record, resume,
refusals and failure report, from a folder or a manifest, and the same from Python."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scale_fixtures import *

from exemplar_color.cli.main import main

pytestmark = pytest.mark.slow  # a Ray cluster and its workers


def cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.err, out.out


def pictures(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def test_ray_run_writes_what_the_folder_run_writes_and_resumes(ray_local, photos, tmp_path, common, capsys):
    d, ref = photos
    rc, err, out = cli(capsys, "colorize", d, "-r", ref, "-o", tmp_path / "local", *common, "--json")
    assert rc == 0, err
    rc, err, out = cli(capsys, "colorize", d, "-r", ref, "-o", tmp_path / "ray", *common, "--engine", "ray",
                       "--workers", "2", "--json", "--save-confidence")
    assert rc == 0, err
    report = json.loads(out)
    assert report["engine"]["workers"] == 2 and not report["failed"] and len(report["outputs"]) == 6
    local, ray = pictures(tmp_path / "local"), pictures(tmp_path / "ray")
    assert set(ray) == set(local) | {k.replace(".png", "_confidence.png") for k in local}  # sub/ kept too
    for name, img in local.items():  # same model, same photo: the same picture
        assert np.abs(img.astype(int) - ray[name].astype(int)).max() <= 1, name
    record = json.loads((tmp_path / "ray" / ".exemplar-color-job.json").read_text())
    assert record["size"] == 64
    # --resume: nothing left to do; a changed setting is refused, naming it, before any work
    rc, err, out = cli(capsys, "colorize", d, "-r", ref, "-o", tmp_path / "ray", *common, "--engine", "ray",
                       "--json", "--save-confidence", "--resume")
    assert rc == 0 and len(json.loads(out)["skipped"]) == 6 and not json.loads(out)["outputs"], err
    common[common.index("--size") + 1] = "96"
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", tmp_path / "ray", *common, "--engine", "ray",
                     "--save-confidence", "--resume")
    assert rc == 1 and "size: 64 then, 96 now" in err
    # without --resume or --overwrite, existing outputs are refused before any work (exit 2)
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", tmp_path / "ray", *common, "--engine", "ray")
    assert rc == 2 and "already exists" in err


def test_manifest_with_a_broken_row_reports_it_and_exits_1(ray_local, photos, tmp_path, common, capsys):
    """Paths and URIs (file://: pyarrow's local file system, read by each worker as s3:// would be) in one
    manifest; a row that is not an image and a URI that names nothing are reported, the others written."""
    d, ref = photos
    (tmp_path / "broken.jpg").write_bytes(b"this is not a JPEG")
    good = sorted(d.rglob("*.jpg"))[:3]
    missing = (tmp_path / "gone.jpg").as_uri()
    rows = [str(good[0]), str(good[1]), good[2].as_uri(), str(tmp_path / "broken.jpg"), missing]
    (tmp_path / "list.csv").write_text("path\n" + "\n".join(rows) + "\n")
    rc, err, out = cli(capsys, "colorize", tmp_path / "list.csv", "-r", ref, "-o", tmp_path / "out", *common,
                       "--engine", "ray", "--workers", "1", "--json")
    report = json.loads(out)
    assert rc == 1 and [f["target"] for f in report["failed"]] == [str(tmp_path / "broken.jpg"), missing]
    assert "no such file" in report["failed"][1]["error"] and "error: " in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(p.stem + ".png" for p in good)
    assert not [p for p in (tmp_path / "out").iterdir() if "tmp" in p.name]
    # the photo read by URI is the photo read by path (the folder run, same settings)
    rc, err, _ = cli(capsys, "colorize", good[2], "-r", ref, "-o", tmp_path / "by_path.png", *common)
    assert rc == 0, err
    by_uri = np.asarray(Image.open(tmp_path / "out" / (good[2].stem + ".png"))).astype(int)
    assert np.abs(by_uri - np.asarray(Image.open(tmp_path / "by_path.png")).astype(int)).max() <= 1


def test_python_call_is_the_command(ray_local, photos, tmp_path, common):
    from exemplar_color.errors import UsageError
    from exemplar_color.cli.archive import colorize_archive

    d, ref = photos
    shutil.rmtree(d / "sub")
    report = colorize_archive(str(d), str(tmp_path / "out"), "-r", str(ref), *common, workers=1)
    assert len(report["outputs"]) == 4 and report["engine"]["name"] == "ray"
    with pytest.raises(UsageError, match="already exists"):
        colorize_archive(str(d), str(tmp_path / "out"), "-r", str(ref), *common)
