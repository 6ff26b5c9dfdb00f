"""Camera ingest: ZeroMQ sources (the station wire format and imagezmq senders)."""
