"""The operator page in a real headless browser: its poll picks up a verdict added after the page loaded."""

from __future__ import annotations

import pytest

from station.observability.live import LiveState
from station.observability.metrics import StationMetrics
from station.observability.server import ObservabilityServer
from tests.helpers.browser import CHROMIUM, run_chromium


def chromium(url: str, profile: str, *extra: str) -> str:
    """Load ``url``, let 3 s of page time pass (virtual time waits for pending fetches), and return what the
    browser printed (``--dump-dom``: the DOM as the page's script left it)."""
    return run_chromium(url, profile, "--virtual-time-budget=3000", *extra).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_a_verdict_appears_on_the_open_page(tmp_path, verdicts):
    live = LiveState()
    served = []
    state = live.state

    def state_then_a_new_part() -> dict:
        """The page's first poll sees an empty station; the part arrives right after it."""
        served.append(state())
        if len(served) == 1:
            live.add("P-LIVE-7", verdicts["reject"])
            live.add("P-LIVE-8", verdicts["unknown_tool"])
            live.flush()  # thumbnails ready before the next poll, however fast virtual time runs
        return served[-1]

    live.state = state_then_a_new_part  # type: ignore[method-assign]
    with ObservabilityServer(StationMetrics(), live, port=0) as server:
        dom = chromium(server.url + "/", str(tmp_path / "profile"), "--dump-dom")

    assert served[0]["parts"] == [] and len(served) >= 3  # it kept polling after the part came
    assert '<div class="empty">No parts yet.</div>' not in dom
    assert 'data-part="P-LIVE-7"' in dom and '<span class="badge reject">reject</span>' in dom
    assert "type crack" in dom and "confidence 0.900" in dom and "figcaption>crop</figcaption>" in dom
    assert '<span class="badge failsafe">reject: tool_error</span>' in dom
    assert '<b id="n-reject">2</b>' in dom and '<b id="n-failsafe">1</b>' in dom
    assert dom.count('src="/api/image/') == 3  # two frames and the crop
    assert 'id="link" class="">live<' in dom
