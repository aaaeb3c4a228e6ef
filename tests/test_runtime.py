"""exemplar_color.runtime: the device from a user's string, torchrun's environment, thread counts; and the
one place the package reads them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import exemplar_color
from exemplar_color import runtime
from exemplar_color._version import __version__
from exemplar_color.errors import ExemplarColorError
from exemplar_color.runtime import DistEnv, dist_env, is_main_process, resolve_device, set_threads

PACKAGE = Path(exemplar_color.__file__).parent
TORCHRUN_ENV = re.compile(r"""(environ\.get\(|environ\[|getenv\()\s*["'](RANK|WORLD_SIZE|LOCAL_RANK)["']""")


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def torchrun(monkeypatch, rank: int, world: int, local: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("LOCAL_RANK", str(local))


def test_dist_env(monkeypatch, no_torchrun):
    assert dist_env() == DistEnv(0, 1, 0) and is_main_process()
    monkeypatch.setenv("RANK", "3")  # RANK alone (no WORLD_SIZE > 1) is not a torchrun job
    assert dist_env() == DistEnv(0, 1, 0)
    torchrun(monkeypatch, 3, 4, 1)
    assert dist_env() == (3, 4, 1) and not is_main_process()
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ExemplarColorError, match="outside WORLD_SIZE"):
        dist_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ExemplarColorError, match="WORLD_SIZE"):
        dist_env()


def test_resolve_device_without_cuda(monkeypatch, no_torchrun):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(" CPU ") == torch.device("cpu")
    dev = torch.device("cpu")
    assert resolve_device(dev) is dev
    with pytest.raises(ExemplarColorError, match="CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ExemplarColorError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_resolve_device_with_cuda_and_torchrun(monkeypatch, no_torchrun):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torch.device() touches no GPU
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    torchrun(monkeypatch, 2, 4, 1)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)  # this rank's GPU
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is kept
    assert resolve_device("cpu") == torch.device("cpu")


def test_set_threads():
    before = torch.get_num_threads()
    try:
        set_threads(None)
        set_threads(0)
        assert torch.get_num_threads() == before
        set_threads(2, faiss=True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
        set_threads(before, faiss=True)


def test_version_module():
    assert exemplar_color.__version__ == __version__ and re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)


def test_the_package_resolves_devices_and_torchrun_only_in_runtime():
    """No module but runtime.py reads torchrun's variables or decides on a device; none takes the version
    from the package's __init__."""
    allowed = {"runtime.py"}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        text = path.read_text()
        if rel not in allowed:
            assert not TORCHRUN_ENV.search(text), f"{rel} reads torchrun's environment: use exemplar_color.runtime"
            for word in ('torch.device("cuda" if', "set_num_threads", "omp_set_num_threads"):
                assert word not in text, f"{rel} uses {word}: use exemplar_color.runtime"
        assert not re.search(r"from \.+ import __version__", text), rel
    assert not (PACKAGE / "device.py").exists()
    assert runtime.__all__ == ["DistEnv", "dist_env", "is_main_process", "resolve_device", "set_threads", "cache_dir",
                               "native_bfloat16"]
