"""The written report: ``report.pdf`` beside report.md and report.html, 2-5 pages, built from the same records; its
first page renders to a non-blank image. Without a PDF library the other reports are still written."""
import sys

import pytest
from test_report import make_runs_tree

from liteda.report.cli import main


def _pdf_text(path) -> list[str]:
    """The text of every page."""
    pdfium = pytest.importorskip("pypdfium2")
    doc = pdfium.PdfDocument(str(path))
    try:
        return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    finally:
        doc.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pdf")
    runs = make_runs_tree(tmp)
    main(["--runs", str(runs), "--dataset", "Fake", "--out", str(tmp / "results")])
    return runs, tmp / "results"


def test_pdf_has_two_to_five_pages_and_a_non_blank_first_page(built):
    import numpy as np

    pdfium = pytest.importorskip("pypdfium2")
    _, out = built
    doc = pdfium.PdfDocument(str(out / "report.pdf"))
    try:
        assert 2 <= len(doc) <= 5
        page = np.asarray(doc[0].render(scale=1).to_pil().convert("L"))
    finally:
        doc.close()
    ink = (page < 128).mean()  # share of dark pixels: text and table rules
    assert 0.01 < ink < 0.5, ink


def test_pdf_text_comes_from_the_records(built):
    """Every section is there, and its numbers are the tables': the three-way table's cells, the limitations the
    records show."""
    _, out = built
    pages = _pdf_text(out / "report.pdf")
    text = "\n".join(pages)
    assert "Problem and setup" in pages[0] and "Methods" in pages[0]
    for section in ("Source-only, adapted and distilled, oracle", "Compression and acceleration",
                    "What helped and what did not", "Limitations"):
        assert section in text, section
    head = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in (out / "headline.md").read_text().splitlines()[2:]]
    flat = " ".join(text.split())  # a long row label wraps in its cell
    for row in head:
        assert row[0] in flat and all(cell in text for cell in row[1:-1]), row
    assert "No TensorRT engine was measured" in text  # no trt row in the bench records
    assert "Beat source-only on average" in text


def test_without_a_pdf_library_md_and_html_are_written_with_one_warning(built, tmp_path, monkeypatch, capsys):
    runs, _ = built
    monkeypatch.setitem(sys.modules, "fpdf", None)  # import fpdf now fails as if it were not installed
    out = tmp_path / "results"
    main(["--runs", str(runs), "--dataset", "Fake", "--out", str(out)])
    assert (out / "report.md").is_file() and (out / "report.html").is_file() and not (out / "report.pdf").exists()
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "report.pdf not written" in err[0] and "fpdf" in err[0]


def test_limitations_come_from_the_records(built):
    """Stand-in weights, Office-Caltech-10 for Office-31 and an unmeasured TensorRT are said when the records say
    so, and only then."""
    from liteda.report.collect import collect
    from liteda.report.findings import limitations, setup_lines

    runs, _ = built
    c = collect(runs, "Fake")
    plain = " ".join(limitations(c))
    assert "stand-in" not in plain and "Office-Caltech-10" not in plain and "No TensorRT engine was measured" in plain
    for s in c.stages:
        s.rec.dataset.name = "OfficeCaltech"
        if s.rec.kind in ("source_only", "adapt", "distill", "oracle"):
            s.rec.weights = "../shared/weights/mobilenet_v3_small-imagenet-standin.pth"
    c.bench.append({"name": "trt-fp16", "runtime": "trt", "parent": "kd", "task": "A2W", "seed": 0,
                    "note": "skipped: no NVIDIA GPU"})
    lines = limitations(c)
    assert any("stand-in ImageNet weights (mobilenet_v3_small-imagenet-standin.pth)" in ln for ln in lines)
    assert any(ln.startswith("Office-Caltech-10 (2 classes") and "Office-31" in ln for ln in lines)
    assert "No TensorRT engine was measured (skipped: no NVIDIA GPU)." in lines
    assert any("stand-in weights" in ln for ln in setup_lines(c))
    c.bench.append({"name": "trt-fp16", "runtime": "trt", "parent": "kd", "task": "W2A", "seed": 0, "p50_ms": 0.5})
    assert not any("TensorRT" in ln for ln in limitations(c))


def test_findings_compare_a_row_with_missing_seeds_on_the_seeds_it_has():
    """An artifact bench recommended on seeds 0 and 2 only is compared with source-only on those two seeds, not
    with source-only's mean over three."""
    from liteda.report.findings import paired_delta

    acc = lambda method, seed, a: {"method": method, "task": "A2W", "seed": seed, "target_test": {"acc": a}}  # noqa: E731
    rows = [acc("source_only", 0, 50.0), acc("source_only", 1, 90.0), acc("source_only", 2, 60.0),
            acc("deployed", 0, 55.0), acc("deployed", 2, 70.0)]
    assert paired_delta(rows, "deployed", "source_only") == 7.5
    assert paired_delta(rows, "missing", "source_only") is None
