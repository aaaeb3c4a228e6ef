"""The shared artifact machinery: manifests, configuration differences, sharded builds, file hashes."""

from __future__ import annotations

import json
import os
import pickle

import h5py
import pytest

from exemplar_color import artifacts
from exemplar_color.artifacts import (BuildReport, ShardPlan, config_differences, content_digest, read_manifest,
                                      refuse_differences, write_manifest)
from exemplar_color.errors import ConfigMismatchError, ExemplarColorError


def test_content_digest_ignores_key_order_and_sees_values():
    assert content_digest({"a": 1, "b": [1, 2]}) == content_digest({"b": [1, 2], "a": 1})
    assert content_digest({"a": 1}) != content_digest({"a": 2})


def test_manifest_round_trip_and_every_bad_file_is_one_typed_error(tmp_path):
    p = tmp_path / "m.json"
    write_manifest(p, {"format": "fmt", "version": 1, "config": {"size": 8}})
    assert read_manifest(p, format="fmt", version=2, error=ExemplarColorError)["config"] == {"size": 8}
    assert not list(tmp_path.glob(".m.json.*")), "no temp file left beside the manifest"
    with pytest.raises(ExemplarColorError, match="newer than this exemplar_color reads"):
        read_manifest(p, format="fmt", version=0, error=ExemplarColorError)
    with pytest.raises(ExemplarColorError, match="not a other"):
        read_manifest(p, format="other", version=1, error=ExemplarColorError)
    p.write_text('{"format": "fmt", "vers')
    with pytest.raises(ExemplarColorError, match=f"{p}: unreadable"):
        read_manifest(p, format="fmt", version=1, error=ExemplarColorError)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "none.json", format="fmt", version=1, error=ExemplarColorError)


def test_config_differences_names_every_mismatch_and_ignores_unset():
    have = {"levels": ["relu5_1", "relu4_1"], "size": 256, "variant": "caffe", "method": "fast"}
    assert config_differences(have, {"levels": ("relu5_1", "relu4_1"), "size": None}) == []  # tuple == list
    diff = config_differences(have, {"levels": ("relu3_1",), "size": 128, "variant": "caffe"}, have_name="cache has")
    assert diff == ["levels: cache has ['relu5_1', 'relu4_1'], requested ['relu3_1']",
                    "size: cache has 256, requested 128"]
    with pytest.raises(ConfigMismatchError) as e:
        refuse_differences("here", have, {"size": 128, "method": "exact"}, built="built otherwise", fix="rebuild")
    assert str(e.value) == ("here: built otherwise (size: has 256, requested 128; method: has 'fast', "
                            "requested 'exact'); rebuild")
    refuse_differences("here", have, {"size": 256}, built="", fix="")  # equal: nothing raised


def _write_part(plan: ShardPlan, i: int, stamp: dict | None = None) -> None:
    with h5py.File(plan.path(i), "w") as f:
        f.attrs.update(plan.stamp(i) if stamp is None else stamp)


def test_shard_plan_splits_items_among_ranks_and_finds_the_parts_still_to_build(tmp_path):
    plans = [ShardPlan(tmp_path, 10, 3, "part-{:03d}.h5", {"plan": "d1"}, "part", rank, 2) for rank in range(2)]
    assert plans[0].stamp(3) == {"part": 3, "plan": "d1"}
    assert pickle.loads(pickle.dumps(plans[1])) == plans[1]  # travels to DataLoader workers with the cache
    assert plans[0].parts == 4 and list(plans[0].items(3)) == [9] and list(plans[0].items(1)) == [3, 4, 5]
    assert plans[0].mine() == [0, 2] and plans[1].mine() == [1, 3]
    assert sorted(i for p in plans for i in p.mine()) == [0, 1, 2, 3]  # every part, once
    _write_part(plans[0], 0)
    _write_part(plans[0], 2, {"plan": "d0", "part": 2})  # a part of another plan: built again
    plans[1].path(1).write_bytes(b"not hdf5")  # a damaged part: built again
    leftover = tmp_path / ".part-003.h5.abcd.exemplar-tmp.h5"  # a killed writer's temp file
    leftover.write_bytes(b"half")
    assert plans[0].todo() == [2] and plans[1].todo() == [1, 3]
    assert not leftover.exists()
    assert plans[0].missing() == [1, 2, 3]
    with pytest.raises(ExemplarColorError, match="timed out waiting for 4 part files"):
        plans[0].wait_for_all(timeout=0.0, poll=0.0)
    for i in (1, 2, 3):
        _write_part(plans[0], i)
    plans[0].wait_for_all(timeout=0.0)
    assert plans[1].todo() == []


def test_build_report_to_dict_names_its_items():
    r = BuildReport(item="pair", total=5, computed=3, reused=2, written=3, parts_built=1, parts_present=1,
                    failures=[(4, "corrupt")], seconds=1.5, extract_seconds=1.0)
    d = r.to_dict()
    assert d["failures"] == [{"pair": 4, "reason": "corrupt"}] and d["failed"] == 1
    assert d["per_second"] == 3.0 and json.loads(json.dumps(d)) == d
    assert BuildReport().per_second == 0.0


def test_a_file_is_hashed_once_and_remembered_across_runs(tv_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("EXEMPLAR_COLOR_HOME", str(tmp_path / "home"))
    f = tmp_path / "w.pth"
    f.write_bytes(tv_weights.read_bytes())
    calls = []
    real = artifacts.sha256_of
    monkeypatch.setattr(artifacts, "sha256_of", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(artifacts, "_memo", {})
    digest = artifacts.file_sha256(f)
    assert artifacts.file_sha256(f) == digest and len(calls) == 1
    assert (tmp_path / "home" / artifacts.HASH_CACHE_NAME).is_file()
    monkeypatch.setattr(artifacts, "_memo", {})  # a new process: read from the remembered file
    assert artifacts.file_sha256(f) == digest and len(calls) == 1
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # the file changed: hashed again
    assert artifacts.file_sha256(f) == digest and len(calls) == 2
    monkeypatch.setenv("EXEMPLAR_COLOR_HOME", "/proc/not-writable")  # nowhere to remember: still works
    monkeypatch.setattr(artifacts, "_memo", {})
    assert artifacts.file_sha256(f) == digest and len(calls) == 3


def test_every_config_record_refuses_keys_it_does_not_know():
    """One policy for a record's unknown keys: refused with a ValueError naming them (a record written by another
    version is not read as something it is not); derived figures written for readers are accepted."""
    from exemplar_color.artifacts import known_fields
    from exemplar_color.colorization.hypercolumn import HypercolumnConfig
    from exemplar_color.colorization.network import ColorizationNetConfig
    from exemplar_color.retrieval.descriptors import DescriptorConfig
    from exemplar_color.training.config import TrainConfig

    for record in (ColorizationNetConfig, HypercolumnConfig, DescriptorConfig):
        d = record().to_dict()
        assert record.from_dict(d) == record()  # its own record, derived figures included
        with pytest.raises(ValueError, match=r"unknown .*settings \['from_the_future'\]"):
            record.from_dict({**d, "from_the_future": 1})
    with pytest.raises(ValueError, match=r"unknown training settings \['from_the_future'\]"):
        TrainConfig.from_dict({"from_the_future": 1})
    assert known_fields(DescriptorConfig, {"size": 128, "dim": 512}, "descriptor settings", derived=("dim",)) == \
        {"size": 128}
