"""Manifests (CSV/Parquet of photo paths) as SRC: read with pyarrow, relative to the manifest, planned as files."""

from __future__ import annotations

import pytest

from exemplar_color.errors import UsageError
from exemplar_color.scale.sources import expand, read_paths


def test_csv_and_parquet_manifests_list_their_photos(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (tmp_path / "a.jpg").write_bytes(b"")
    csv = tmp_path / "list.csv"
    csv.write_text("path,year\na.jpg,1931\n/abs/b.png,1950\n,\n")
    assert read_paths(str(csv)) == [str(tmp_path / "a.jpg"), "/abs/b.png"]
    pq.write_table(pa.table({"id": [1], "path": ["c.tif"]}), tmp_path / "list.parquet")
    assert read_paths(str(tmp_path / "list.parquet")) == [str(tmp_path / "c.tif")]
    assert expand([str(tmp_path / "a.jpg"), str(csv)])[:2] == [str(tmp_path / "a.jpg")] * 2


def test_uris_are_listed_as_written_and_planned_by_their_names(tmp_path):
    """URIs of the file systems pyarrow opens are kept as written (nothing is fetched while planning: each
    worker reads its photos); their outputs are named by the file's stem, with the usual collision rule."""
    from exemplar_color.outputs import plan_colorize

    (tmp_path / "list.csv").write_text("path\ns3://archive/scans/1931/a.tif\ngs://b/c.jpg\nfile:///data/d.png\n")
    uris = read_paths(str(tmp_path / "list.csv"))
    assert uris == ["s3://archive/scans/1931/a.tif", "gs://b/c.jpg", "file:///data/d.png"]
    jobs = plan_colorize(uris, str(tmp_path / "out"))
    assert [(j.target, j.output.name) for j in jobs] == [(u, n) for u, n in zip(uris, ["a.png", "c.png", "d.png"])]
    with pytest.raises(UsageError, match="s3://x/a.tif and gs://y/a.jpg would both be written to"):
        plan_colorize(["s3://x/a.tif", "gs://y/a.jpg"], str(tmp_path / "out"))


def test_bad_manifests_are_one_line(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "ftp.csv").write_text("path\nftp://host/a.jpg\n")
    with pytest.raises(UsageError, match=r"ftp\.csv: ftp://host/a\.jpg: the ftp:// scheme is not read"):
        read_paths(str(tmp_path / "ftp.csv"))
    (tmp_path / "dir.csv").write_text("path\ns3://bucket/scans/\n")
    with pytest.raises(UsageError, match="names no file"):
        read_paths(str(tmp_path / "dir.csv"))
    (tmp_path / "escape.csv").write_text("path\nok.jpg\nsub/../../outside.jpg\n")
    with pytest.raises(UsageError, match=r"sub/\.\./\.\./outside\.jpg: a relative path must stay inside"):
        read_paths(str(tmp_path / "escape.csv"))
    (tmp_path / "empty.csv").write_text("path\n")
    with pytest.raises(UsageError, match="lists no photos"):
        read_paths(str(tmp_path / "empty.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(UsageError, match="not a readable manifest"):
        read_paths(str(tmp_path / "bad.parquet"))
