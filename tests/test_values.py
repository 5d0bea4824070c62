"""One encoder for every value that becomes JSON: the full, summary and limit policies,
the one JSON form of NaN and infinity, and tensor helpers that import nothing heavy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jupyter_flow.values import (
    FULL,
    HISTOGRAM_BINS,
    SUMMARY,
    ValueTooLarge,
    dtype_name,
    dumps,
    encode,
    float_from_json,
    is_tensor,
    limit,
    summarize,
    to_host,
)


def strict_loads(text: str) -> Any:
    """A JSON parser that refuses the non-standard NaN and Infinity literals."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


# -- NaN and infinity ----------------------------------------------------------------------
def test_nan_and_infinity_are_the_same_strings_in_every_policy_and_strict_parsers_read_them() -> None:
    import torch

    value = {"x": math.nan, "up": math.inf, "down": -math.inf, "scores": [1.0, math.nan],
             "tensor": torch.tensor([[math.inf, 2.0], [math.nan, -math.inf]]), "array": np.array([math.nan, 1.0]),
             "scalar": np.float32("-inf")}
    full = encode(value).data
    assert full["x"] == "NaN" and full["up"] == "Infinity" and full["down"] == "-Infinity"
    assert full["scores"] == [1.0, "NaN"] and full["scalar"] == "-Infinity"
    assert full["tensor"] == [["Infinity", 2.0], ["NaN", "-Infinity"]] and full["array"] == ["NaN", 1.0]
    summary = encode(value, SUMMARY).data
    assert (summary["x"], summary["up"], summary["down"], summary["scores"]) == ("NaN", "Infinity", "-Infinity", [1.0, "NaN"])
    assert summary["tensor"]["__summary__"]["nan"] == 1 and summary["tensor"]["__summary__"]["inf"] == 2
    assert encode(value, limit(max_values=100)).data == full
    for data in (full, summary):
        text = dumps(data)
        assert strict_loads(text) == json.loads(text) == data
    # numpy (what tritonclient and most clients use) and float() read them back
    assert np.isnan(np.array(full["tensor"], dtype=np.float32)).sum() == 1
    assert [float_from_json(v) for v in ("Infinity", "-Infinity", 2)] == [math.inf, -math.inf, 2.0]
    assert math.isnan(float_from_json("NaN") or 0.0) and float_from_json("nan") is None and float_from_json(True) is None


def test_each_conversion_is_listed_where_it_was_made() -> None:
    import torch

    data, conversions = encode({"t": torch.ones(2, 3), "blob": b"\x00\x01", "bad": "a\ud800", "x": math.inf}, path="outputs")
    assert data["t"] == [[1.0] * 3] * 2 and data["blob"] == "AAE=" and data["bad"] == "a\\ud800" and data["x"] == "Infinity"
    listed = {c.path: (c.kind, c.written_as) for c in conversions}
    assert listed["outputs.t"] == ("tensor float32 [2, 3] on cpu", "a nested list of its values")
    assert listed["outputs.blob"] == ("bytes (2)", "base64 text")
    assert listed["outputs.bad"][0] == "text with lone surrogates"
    assert listed["outputs.x"] == ("float inf", "the string 'Infinity'")
    # a tensor full of NaNs: the first hundred say enough
    _, many = encode(np.full(1000, np.nan))
    assert len(many) == 101 and many[-1].kind == "901 more values"


def test_dumps_writes_strict_json_of_anything() -> None:
    import torch

    text = dumps({"t": torch.tensor([math.nan]), "s": "\ud800", "ok": "déjà vu"})
    assert strict_loads(text) == {"t": ["NaN"], "s": "\\ud800", "ok": "déjà vu"}
    text.encode("utf-8")  # any UTF-8 writer takes it
    assert dumps({"a": [1, 2]}, indent=2) == json.dumps({"a": [1, 2]}, indent=2)


# -- the policies --------------------------------------------------------------------------
def test_full_writes_every_element() -> None:
    import torch

    big = torch.arange(200_000, dtype=torch.float32)
    data = encode({"big": big, "text": "a" * 50_000, "items": list(range(5000)), "set": {3, 1, 2}, "bf16": big[:3].bfloat16()}, FULL).data
    assert len(data["big"]) == 200_000 and data["big"][-1] == 199_999.0
    assert len(data["text"]) == 50_000 and data["items"] == list(range(5000)) and data["set"] == [1, 2, 3]
    assert data["bf16"] == [0.0, 1.0, 2.0]


def test_summary_cuts_long_texts_and_lists_and_says_so() -> None:
    out = encode({"text": "a" * 50_000, "blob": b"\x00" * 1000, "items": list(range(5000)), "path": Path("/x"), "obj": object()},
                 SUMMARY).data
    text = out["text"]["__summary__"]
    assert text["kind"] == "text" and text["truncated"] is True and text["length"] == 50_000 and len(text["head"]) == 10_000
    assert out["blob"] == {"__summary__": {"kind": "bytes", "length": 1000}}
    items = out["items"]["__summary__"]
    assert items["kind"] == "list" and items["truncated"] is True and items["length"] == 5000 and len(items["head"]) == 1000
    assert out["path"] == "/x" and "__repr__" in out["obj"]


def test_limit_gives_every_element_up_to_the_bound_then_an_error_or_a_marker() -> None:
    import torch

    value = {"small": [1, 2, 3], "big": torch.zeros(100, 100)}
    assert encode(value, limit(max_values=10_003)).data["big"] == [[0.0] * 100] * 100
    with pytest.raises(ValueTooLarge) as info:
        encode(value, limit(max_values=10_000))
    assert info.value.path == "big" and info.value.size == 10_003 and info.value.limit == 10_000
    assert "big" in str(info.value) and "10,000 values" in str(info.value)
    data, conversions = encode(value, limit(max_values=10_000, on_limit="marker"))
    assert data["small"] == [1, 2, 3]
    assert data["big"] == {"__omitted__": {"kind": "tensor float32 [100, 100] on cpu", "size": 10_000, "unit": "values", "limit": 10_000}}
    assert [c.written_as for c in conversions] == ["omitted: over the limit of 10,000 values"]
    with pytest.raises(ValueTooLarge, match="bytes"):
        encode({"a": "x" * 60, "b": b"y" * 60}, limit(max_bytes=100))
    marked = encode({"a": "x" * 60, "b": "y" * 60}, limit(max_bytes=100, on_limit="marker")).data
    assert marked["a"] == "x" * 60 and marked["b"]["__omitted__"]["unit"] == "bytes"
    # an empty array still takes its nested lists: a million lists of a million is refused before any is built
    with pytest.raises(ValueTooLarge, match="1,000,000,000,000 values"):
        encode(np.zeros((1_000_000, 1_000_000, 0)), limit(max_values=2**26))


# -- tensors and arrays --------------------------------------------------------------------
def test_tensor_summary() -> None:
    import torch

    t = torch.tensor([[1.0, 2.0, 3.0, float("nan")], [float("inf"), -float("inf"), 4.0, 5.0]])
    s = summarize(t)
    assert s is not None
    assert s["kind"] == "tensor" and s["shape"] == [2, 4] and s["dtype"] == "float32" and s["device"] == "cpu"
    assert (s["nan"], s["inf"], s["numel"]) == (1, 2, 8)
    finite = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s["min"], s["max"]) == (1.0, 5.0)
    assert s["mean"] == pytest.approx(float(finite.mean()))
    assert s["std"] == pytest.approx(float(finite.std()))
    hist = s["histogram"]
    assert hist["bins"] == HISTOGRAM_BINS and len(hist["counts"]) == HISTOGRAM_BINS
    assert sum(hist["counts"]) == 5 and hist["range"] == [1.0, 5.0]
    assert hist["counts"][0] == 1 and hist["counts"][-1] == 1


def test_integer_empty_and_bfloat16_tensors() -> None:
    import torch

    s = summarize(torch.arange(10, dtype=torch.int64))
    assert s is not None and s["dtype"] == "int64" and (s["min"], s["max"], s["mean"]) == (0.0, 9.0, 4.5)
    empty = summarize(torch.empty(0, 3))
    assert empty is not None and empty["shape"] == [0, 3] and empty["numel"] == 0 and "mean" not in empty
    bf16 = summarize(torch.tensor([1.0, 3.0], dtype=torch.bfloat16, requires_grad=True))
    assert bf16 is not None and bf16["dtype"] == "bfloat16" and bf16["mean"] == 2.0


def test_ndarray_summary() -> None:
    a = np.array([[0.5, np.nan], [np.inf, 2.5]], dtype=np.float64)
    s = summarize(a)
    assert s is not None
    assert s["kind"] == "ndarray" and s["shape"] == [2, 2] and s["dtype"] == "float64" and s["device"] == "cpu"
    assert (s["nan"], s["inf"]) == (1, 1)
    assert (s["min"], s["max"], s["mean"]) == (0.5, 2.5, 1.5)
    assert s["std"] == pytest.approx(float(np.std([0.5, 2.5], ddof=1)))
    assert sum(s["histogram"]["counts"]) == 2


def test_plain_values_are_not_tensors() -> None:
    for value in ([1.0, 2.0], "text", {"a": 1}, 3.5, np.float32(1.0)):
        assert not is_tensor(value) and summarize(value) is None and dtype_name(value) == ""


def test_to_host_detaches_and_gives_numpy() -> None:
    import torch

    t = torch.tensor([1.0, 2.0], requires_grad=True) * 2
    host = to_host(t)
    assert isinstance(host, np.ndarray) and host.tolist() == [2.0, 4.0]
    assert to_host(torch.tensor([1 + 2j]).conj()).tolist() == [1 - 2j]
    assert to_host(torch.tensor([1.5], dtype=torch.bfloat16)).dtype == np.float32
    a = np.ones(3)
    assert to_host(a) is a
    with pytest.raises(TypeError):
        to_host([1.0])


@pytest.mark.gpu
def test_a_cuda_tensor_is_written_from_host_memory() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    t = torch.tensor([1.0, math.nan], device="cuda")
    assert encode(t).data == [1.0, "NaN"]
    assert summarize(t)["device"].startswith("cuda")  # type: ignore[index]
    assert isinstance(to_host(t), np.ndarray)


def test_telling_a_tensor_imports_neither_torch_nor_numpy() -> None:
    script = textwrap.dedent("""\
        import sys
        from jupyter_flow.values import SUMMARY, dumps, encode, is_tensor, summarize
        value = {"x": [1.0, float("nan")], "b": b"x", "t": "text"}
        assert not is_tensor(value) and summarize(value) is None
        dumps(encode(value).data), dumps(encode(value, SUMMARY).data)
        print(sorted(m for m in ("torch", "numpy") if m in sys.modules))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
