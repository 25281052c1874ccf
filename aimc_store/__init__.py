"""The Redis store of jobs, metrics, artifacts, users, datasets and sweeps, shared by the
API (service/) and the workers (worker/): key naming, Lua scripts, one module per
resource (each a part of JobStore: store.jobs, store.users, ..., aimc_store.store),
typed records, and the settings both processes read. Imports neither torch,
the engine, the API nor the worker (import-linter contract)."""
