"""The node cache's store and keys: values with tensors kept without pickle, a size
limit, and processes sharing one folder."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jupyter_flow.cache import NodeCache, Uncacheable, node_key


def test_values_with_tensors_come_back_whole(tmp_path: Path) -> None:
    cache = NodeCache(tmp_path)
    value = {"logits": torch.tensor([[0.25, float("nan")], [1.0, -2.0]]), "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
             "raw": b"\x00\xffpdf", "score": float("inf"), "$odd": {"$tensor": 1}, "words": ["a", "β", None, True],
             "half": torch.ones(3, dtype=torch.bfloat16)}
    assert cache.put("k", value, node="n", kind="python")
    back = cache.get("k")
    assert torch.equal(back["logits"][1], value["logits"][1]) and math.isnan(back["logits"][0, 1])
    assert isinstance(back["ids"], np.ndarray) and back["ids"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert back["raw"] == b"\x00\xffpdf" and back["score"] == math.inf and back["$odd"] == {"$tensor": 1}
    assert back["words"] == ["a", "β", None, True] and back["half"].dtype == torch.bfloat16
    assert cache.get("other") is NodeCache.MISS and (cache.hits, cache.misses) == (1, 1)


def test_the_store_holds_no_pickle(tmp_path: Path) -> None:
    cache = NodeCache(tmp_path)
    cache.put("k", {"t": torch.zeros(2)}, node="n")
    assert b"\x80\x04" not in cache.path.read_bytes()  # no pickle protocol header anywhere
    assert not cache.put("j", {"x": object()})  # a custom object is not stored: the node runs each time
    assert cache.get("j") is NodeCache.MISS


def test_keys_follow_content_not_identity() -> None:
    a = node_key("python", {"x": torch.tensor([1.0, 2.0]), "n": 3}, "code1")
    assert a == node_key("python", {"n": 3, "x": torch.tensor([1.0, 2.0])}, "code1")
    assert a != node_key("python", {"x": torch.tensor([1.0, 2.5]), "n": 3}, "code1")
    assert a != node_key("python", {"x": torch.tensor([1.0, 2.0]), "n": 3}, "code2")
    assert a != node_key("http", {"x": torch.tensor([1.0, 2.0]), "n": 3}, "code1")
    assert node_key("t", {"x": torch.tensor([1, 2], dtype=torch.int32)}) != node_key("t", {"x": torch.tensor([1, 2], dtype=torch.int64)})
    with pytest.raises(Uncacheable):
        node_key("python", {"x": object()})


def test_the_size_limit_drops_the_least_recently_used(tmp_path: Path) -> None:
    cache = NodeCache(tmp_path, max_bytes=30_000)
    for i in range(3):
        assert cache.put(f"k{i}", {"t": np.zeros(1000, dtype=np.float64)}, node=f"n{i}")  # about 8 KB each
        cache.get("k0")  # k0 stays in use
    cache.put("k3", {"t": np.zeros(1000)}, node="n3")
    assert cache.get("k1") is NodeCache.MISS and cache.get("k0") is not NodeCache.MISS
    assert cache.info().bytes <= 30_000


def test_clear_one_node_or_all(tmp_path: Path) -> None:
    cache = NodeCache(tmp_path)
    cache.put("a", 1, node="x")
    cache.put("b", 2, node="y")
    assert cache.clear(node="x") == 1 and cache.get("a") is NodeCache.MISS and cache.get("b") == 2
    assert cache.info().nodes == {"y": 1}
    assert cache.clear() == 1 and cache.info().entries == 0


def test_cli_info_and_clear(tmp_path: Path) -> None:
    cache = NodeCache(tmp_path)
    cache.put("a", {"v": 1}, node="clean")
    cache.close()  # the file whole, its write-ahead log folded in: the garbage below replaces everything
    run = [sys.executable, "-m", "jupyter_flow.cli", "cache", "--dir", str(tmp_path)]
    info = subprocess.run([*run, "info", "--json"], capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and json.loads(info.stdout)["nodes"] == {"clean": 1}
    cleared = subprocess.run([*run, "clear", "--node", "clean"], capture_output=True, text=True, timeout=120)
    assert cleared.returncode == 0 and "removed 1" in cleared.stdout
    (tmp_path / "nodes.sqlite").write_bytes(b"garbage" * 1000)
    broken = subprocess.run([*run, "info"], capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2 and "cannot be used" in broken.stderr and "Traceback" not in broken.stderr


WRITER = """
import sys, numpy as np
from jupyter_flow.cache import NodeCache
cache = NodeCache(sys.argv[1])
for i in range(60):
    assert cache.put(sys.argv[2] + str(i), {"i": i, "a": np.full(100, i)}, node=sys.argv[2])
"""


def test_two_processes_writing_one_cache_lose_nothing(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), tag], stderr=subprocess.PIPE, text=True) for tag in "ab"]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    cache = NodeCache(tmp_path)
    assert cache.info().entries == 120
    assert all(cache.get(f"{t}{i}")["a"][0] == i for t in "ab" for i in range(60))
