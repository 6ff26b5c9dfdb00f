"""What the station shows while it runs: stage stamps (`stamps`), Prometheus metrics (`metrics`), the
operator page's live state (`live`) and the HTTP server for both (`server`).

Import from the modules: the audit needs only the stamps, and the `indus` CLI should not pay for
prometheus_client and the HTTP server on every start.
"""
