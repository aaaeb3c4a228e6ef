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


def test_bad_manifests_are_one_line(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "s3.csv").write_text("path\ns3://bucket/a.jpg\n")
    with pytest.raises(UsageError, match="only local or mounted paths"):
        read_paths(str(tmp_path / "s3.csv"))
    (tmp_path / "escape.csv").write_text("path\nok.jpg\nsub/../../outside.jpg\n")
    with pytest.raises(UsageError, match=r"sub/\.\./\.\./outside\.jpg: a relative path must stay inside"):
        read_paths(str(tmp_path / "escape.csv"))
    (tmp_path / "empty.csv").write_text("path\n")
    with pytest.raises(UsageError, match="lists no photos"):
        read_paths(str(tmp_path / "empty.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(UsageError, match="not a readable manifest"):
        read_paths(str(tmp_path / "bad.parquet"))
