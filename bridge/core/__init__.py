"""The pure core: the canonical model, field converters, mappings and the generated row
builder, the gate, the planner, the guard, resync scopes and reconciliation; what a portal
takes, matching the contingent of a portal that owns it, and where it has a place for a record.

Nothing here does I/O: the core imports only the standard library, ``xxhash`` and itself; no
port, adapter, service, CLI, database driver or HTTP library (checked by import-linter).
"""
