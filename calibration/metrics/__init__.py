"""Re-validation metrics: each accumulates results with ``update`` and reports with ``compute``.

`summary.summarize` runs them all per category, pooled, and as the mean over categories.
"""

from calibration.metrics.summary import HEADLINE, flatten, summarize

__all__ = ["HEADLINE", "flatten", "summarize"]
