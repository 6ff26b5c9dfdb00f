"""The audit trail: one SQLite row per part, with the evidence images of rejects on disk."""

from station.audit.store import AuditDB, AuditError, AuditStore

__all__ = ["AuditDB", "AuditError", "AuditStore"]
