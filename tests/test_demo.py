"""`causalscene demo --quick`: the whole story end to end at tiny sizes, and its report."""

import json

import pytest

from causalscene.cli import main


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().splitlines()[-1] == f"The report is at {out / 'index.html'}"
    html = (out / "index.html").read_text()
    for needle in ("Seeing vs doing", "Counterfactual", "CAGE", "Modules", "0.6229", "0.3928"):
        assert needle in html, needle
    report = json.loads((out / "report.json").read_text())
    images = [img for section in report["sections"] for img in section.get("images", [])]
    assert len(images) >= 8 and all((out / img["path"]).is_file() for img in images)
    queries = json.loads((out / "queries" / "queries.json").read_text())
    assert queries["intervention"]["probabilities"] == queries["prior"]["probabilities"]
    timings = json.loads((out / "timings.json").read_text())
    assert len(timings["steps_seconds"]) == 12
