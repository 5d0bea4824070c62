"""The `pdf` node on real PDFs written with pymupdf: text, scanned (OCR), encrypted, damaged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pymupdf as fitz
import pytest

from jupyter_flow import Flow
from jupyter_flow.errors import FlowRunError, FlowValidationError
from jupyter_flow.nodes.pdf import find_tessdata, parse_page_ranges
from jupyter_flow_examples.samples import make_contract_pdf

needs_tesseract = pytest.mark.skipif(
    find_tessdata() is None,
    reason="Tesseract language data not found: apt-get install -y tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim",
)


def pdf_flow(**config: Any) -> Flow:
    return Flow.from_dict({"nodes": [{"id": "extract", "type": "pdf", "config": config}]})


def extract(**config: Any) -> dict[str, Any]:
    return pdf_flow(**config).run().outputs["extract"]


def failure(**config: Any) -> str:
    with pytest.raises(FlowRunError) as info:
        pdf_flow(**config).run()
    return str(info.value)


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_contract_pdf(tmp_path_factory.mktemp("pdf") / "contract.pdf")


def test_text_pdf_gives_pages_paragraphs_and_metadata(contract: Any) -> None:
    out = extract(source=str(contract.path))
    assert [p["number"] for p in out["pages"]] == [1, 2, 3]
    assert not any(p["ocr"] for p in out["pages"])
    # Each clause the generator wrote comes back as one paragraph, on its page.
    assert [(p["text"], p["page"]) for p in out["paragraphs"]] == [(c.text, c.page) for c in contract.clauses]
    for para in out["paragraphs"]:
        x0, y0, x1, y1 = para["bbox"]
        assert 0 <= x0 < x1 <= 595 and 0 <= y0 < y1 <= 842
    assert "within 120 days" in out["pages"][0]["text"]
    assert "unlimited liability" in out["text"]
    meta = out["metadata"]
    assert meta["page_count"] == 3 and meta["pages_read"] == [1, 2, 3] and meta["ocr_pages"] == []
    assert meta["title"] == "Master Services Agreement" and meta["author"] == "jupyter-flow samples"
    assert meta["encrypted"] is False


def test_source_may_be_bytes(contract: Any) -> None:
    # Bytes arrive through a template, e.g. from an upload or an upstream node.
    flow = Flow.from_dict({"nodes": [{"id": "extract", "type": "pdf", "config": {"source": "{{document}}", "pages": "2"}}]})
    out = flow.run({"document": contract.path.read_bytes()}).outputs["extract"]
    assert [p["number"] for p in out["pages"]] == [2]
    assert out["metadata"]["source"].endswith("bytes>")
    assert {p["page"] for p in out["paragraphs"]} == {2}


def test_source_from_a_flow_input_template(contract: Any) -> None:
    flow = Flow.from_dict(
        {
            "inputs": {"document": {"type": "file"}, "pages": {"type": "string", "default": "1,3"}},
            "nodes": [{"id": "extract", "type": "pdf", "config": {"source": "{{document}}", "pages": "{{pages}}"}}],
        }
    )
    out = flow.run({"document": str(contract.path)}).outputs["extract"]
    assert [p["number"] for p in out["pages"]] == [1, 3]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("1-2", [1, 2]), ("3,1", [3, 1]), ("2-", [2, 3]), ("-2", [1, 2]), ([3, "1-2"], [3, 1, 2]), (2, [2]), ("all", [1, 2, 3])],
)
def test_page_ranges(contract: Any, spec: Any, expected: list[int]) -> None:
    out = extract(source=str(contract.path), pages=spec)
    assert [p["number"] for p in out["pages"]] == expected
    assert out["metadata"]["pages_read"] == expected


@pytest.mark.parametrize("spec", ["0", "3-1", "two", "1;2", [1.5]])
def test_bad_page_ranges_are_validation_errors(spec: Any) -> None:
    problems = pdf_flow(source="x.pdf", pages=spec).problems()
    assert [p.field for p in problems] == ["config.pages"], problems


def test_page_past_the_end_names_the_page_count(contract: Any) -> None:
    message = failure(source=str(contract.path), pages="2-9")
    assert "config.pages" in message and "page 9 is past the end" in message and "3 pages" in message


def test_parse_page_ranges_checks_syntax_without_a_document() -> None:
    assert parse_page_ranges("1-3,5") == [1, 2, 3, 5]
    assert parse_page_ranges(None) is None
    with pytest.raises(ValueError, match="runs backwards"):
        parse_page_ranges("5-2")


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "contract.pdf"
    message = failure(source=str(missing))
    assert "no such file" in message and str(missing) in message and "node 'extract'" in message


def test_non_pdf_file_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "notes.pdf"
    fake.write_text("these are meeting notes, not a PDF\n")
    message = failure(source=str(fake))
    assert str(fake) in message and "not a PDF" in message
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    assert "empty file" in failure(source=str(empty))


def test_truncated_pdf_is_an_error_unless_allowed(contract: Any, tmp_path: Path) -> None:
    data = contract.path.read_bytes()
    cut = tmp_path / "cut.pdf"
    # an incomplete copy: everything but the end of the file (cross-reference table and %%EOF)
    cut.write_bytes(data[: data.rfind(b"xref")])
    message = failure(source=str(cut))
    assert str(cut) in message and "truncated" in message and "allow_damaged" in message
    # What MuPDF can recover is still readable when the user asks for it.
    out = extract(source=str(cut), allow_damaged=True)
    assert out["metadata"]["repaired"] is True
    assert "MASTER SERVICES AGREEMENT" in out["text"]


def test_encrypted_pdf_needs_the_right_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = make_contract_pdf(tmp_path / "locked.pdf", password="s3cret")
    message = failure(source=str(locked.path))
    assert "encrypted" in message and "config.password" in message and str(locked.path) in message
    message = failure(source=str(locked.path), password="guess")
    assert "password" in message and "wrong" in message
    out = extract(source=str(locked.path), password="s3cret")
    assert out["metadata"]["encrypted"] is True
    assert [p["text"] for p in out["paragraphs"]] == [c.text for c in locked.clauses]
    # Passwords come from the environment rather than the flow file.
    monkeypatch.setenv("CONTRACT_PDF_PASSWORD", "s3cret")
    out = extract(source=str(locked.path), password="${CONTRACT_PDF_PASSWORD}", pages="1")
    assert out["pages"][0]["text"].startswith("MASTER SERVICES AGREEMENT")


def test_wrong_config_is_a_validation_error() -> None:
    with pytest.raises(FlowValidationError) as info:
        pdf_flow(source="a.pdf", ocr="sometimes", ocr_languag="eng").validate()
    fields = {p.field for p in info.value.problems}
    assert fields == {"config.ocr", "config.ocr_languag"}


@needs_tesseract
def test_scanned_pdf_is_read_by_ocr(tmp_path: Path) -> None:
    scan = make_contract_pdf(tmp_path / "scan.pdf", scanned=True)
    out = extract(source=str(scan.path), ocr_language="eng", pages="1-2")
    assert [p["ocr"] for p in out["pages"]] == [True, True]
    assert out["metadata"]["ocr_pages"] == [1, 2] and out["metadata"]["ocr_language"] == "eng"
    texts = [p["text"] for p in out["paragraphs"]]
    # OCR lines are grouped back into the clauses the generator wrote.
    assert texts[0] == "MASTER SERVICES AGREEMENT"
    assert any("within 120 days" in t and t.startswith("3. Payment.") for t in texts)
    assert any("unlimited liability" in t for t in texts)
    expected = [c for c in scan.clauses if c.page <= 2]
    assert len(texts) == len(expected)
    assert [p["page"] for p in out["paragraphs"]] == [c.page for c in expected]


@needs_tesseract
def test_ocr_never_leaves_scanned_pages_empty(tmp_path: Path) -> None:
    scan = make_contract_pdf(tmp_path / "scan.pdf", scanned=True)
    out = extract(source=str(scan.path), ocr="never", pages="1")
    assert out["pages"] == [{"number": 1, "text": "", "ocr": False}]
    assert out["paragraphs"] == []


@needs_tesseract
def test_chinese_scan_is_read_with_chinese_language_data(tmp_path: Path) -> None:
    scan = make_contract_pdf(tmp_path / "scan_zh.pdf", scanned=True, language="zh")
    out = extract(source=str(scan.path), pages="2")
    assert "chi_sim" in out["metadata"]["ocr_language"]
    assert any("无限责任" in p["text"] for p in out["paragraphs"])
    assert any("自动续期" in p["text"] for p in out["paragraphs"])


def test_missing_ocr_language_data_says_how_to_install(tmp_path: Path) -> None:
    scan = make_contract_pdf(tmp_path / "scan.pdf", scanned=True)
    empty = tmp_path / "tessdata"
    empty.mkdir()
    message = failure(source=str(scan.path), tessdata=str(empty), pages="1")
    assert "needs OCR" in message and "apt-get install -y tesseract-ocr" in message and "ocr: never" in message


@needs_tesseract
def test_unknown_ocr_language_names_the_package(tmp_path: Path) -> None:
    scan = make_contract_pdf(tmp_path / "scan.pdf", scanned=True)
    message = failure(source=str(scan.path), ocr_language="eng+jpn_vert", pages="1")
    assert "jpn_vert" in message and "tesseract-ocr-jpn-vert" in message


def test_find_tessdata_without_tesseract_finds_nothing(tmp_path: Path) -> None:
    assert find_tessdata(env={"PATH": str(tmp_path)}, candidates=[str(tmp_path)]) is None
    data = tmp_path / "share" / "tessdata"
    data.mkdir(parents=True)
    (data / "eng.traineddata").write_bytes(b"\0")
    assert find_tessdata(env={"PATH": str(tmp_path), "TESSDATA_PREFIX": str(tmp_path / "share")}, candidates=[]) == data


def test_tesseract_binary_matches_language_data() -> None:
    # CI installs Debian's tesseract-ocr; when the binary is there its data must be found.
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract binary not installed")
    assert find_tessdata() is not None


def _huge_scan(path: Path, points: float) -> Path:
    """A few KB of PDF declaring one image-only page of `points` x `points`: a scan to OCR."""
    doc = fitz.open()
    page = doc.new_page(width=points, height=points)
    pix = fitz.Pixmap(fitz.csRGB, fitz.IRect(0, 0, 60, 20), False)
    pix.clear_with(255)
    page.insert_image(fitz.Rect(0, 0, points, points / 3), pixmap=pix)
    doc.save(path)
    return path


@needs_tesseract
def test_a_huge_page_is_read_at_a_resolution_that_fits_the_pixel_bound(tmp_path: Path) -> None:
    # 3000 x 3000 points is 156 M pixels at 300 dpi (2 GB in OCR); the bound keeps it to 40 M
    scan = _huge_scan(tmp_path / "huge.pdf", 3000)
    assert scan.stat().st_size < 20_000
    # the peak of the child's own memory (VmHWM): getrusage's ru_maxrss starts a child at its
    # parent's peak, here the test process's (over 1 GB with the whole suite imported)
    code = f"""
import json
from jupyter_flow import Flow
flow = Flow.from_dict({{"nodes": [{{"id": "p", "type": "pdf", "config": {{"source": {str(scan)!r}, "ocr": "always", "ocr_language": "eng"}}}}]}})
out = flow.run({{}}).outputs["p"]
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"ocr": out["pages"][0]["ocr"], "peak_mb": peak_kb / 1024}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["ocr"] is True
    assert seen["peak_mb"] < 1200, seen


@needs_tesseract
def test_a_page_too_large_even_at_72_dpi_is_refused_by_name(tmp_path: Path) -> None:
    scan = _huge_scan(tmp_path / "vast.pdf", 14400)  # the largest page PDF allows: 200 inches
    message = failure(source=str(scan), ocr="always", ocr_language="eng", ocr_max_pixels=1_000_000)
    assert "page 1" in message and "config.ocr_max_pixels" in message and "ocr: never" in message
