"""report.html: self-contained, escaped, and its plots really render in a browser."""

import re

import cv2
import numpy as np
import pytest

from calibration.metrics import summarize
from calibration.validate.report import OVERALL_COLOUR, render_report
from tests.helpers.browser import CHROMIUM, run_chromium


def test_report_is_self_contained_and_escapes_model_text(planned_run):
    html = (planned_run[0] / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)  # every image is inline
    assert "<script" not in html and "<link" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    gallery = html[html.index("<h2>Failures</h2>") :]
    # One escape (the stain), then one false reject (pin_connector good/000); nothing else failed.
    assert gallery.count('class="card"') == 2
    assert gallery.index("stain") < gallery.index("pin_connector")
    assert gallery.count("data:image/jpeg;base64,") == 2
    assert "parse_error: 1" in html


def test_edge_cases_render(planned_run):
    """A category with only good parts, a category of fail-safes whose images are gone, and no results."""
    run = planned_run[2]["run"]
    only_good = [r for r in planned_run[1].results if r.label == 0 and r.category == "brushed_metal"]
    fail_safes = [
        r.model_copy(
            update={
                "verdict": r.verdict.model_copy(
                    update={"decision": "reject", "fail_safe": True, "reason": "deadline", "confidence": None}
                ),
                "image": "/gone/away.png",
            }
        )
        for r in planned_run[1].results
        if r.category == "pin_connector"
    ]
    html = render_report({"run": run} | summarize(only_good + fail_safes), only_good + fail_safes)
    assert "image not available: /gone/away.png" in html and "deadline: 4" in html
    empty = render_report({"run": run} | summarize([]), [])
    assert "0 escape(s)" in empty and empty.rstrip().endswith("</html>")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_headless_chromium_shows_the_plots(planned_run, tmp_path):
    shot = tmp_path / "report.png"
    url = (planned_run[0] / "report.html").as_uri()
    run_chromium(url, tmp_path / "profile", "--window-size=1280,3000", f"--screenshot={shot}")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (3000, 1280)
    assert image.std() > 20  # not a blank page
    colour = np.array([int(OVERALL_COLOUR[i : i + 2], 16) for i in (5, 3, 1)])  # as BGR
    roc_pixels = np.all(np.abs(image.astype(int) - colour) < 40, axis=2)
    assert roc_pixels.sum() > 200, "the pooled ROC/PR curves are not on the page"
    rows = np.flatnonzero(roc_pixels.any(axis=1))
    assert rows.min() < 1500  # near the top, under the headline table
