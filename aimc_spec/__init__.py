"""aimc_spec: what describes one job, without torch.

The job spec and presets, the vocabulary (schedule names, job states), sweep expansion,
cost and fit checks, metric record formats and dataset-file checks. The API, the client,
the CLI, the store, the worker and aimc_study (many jobs compared) all import it; it
imports nothing of theirs and never torch, so a process that only validates, prices or
lists jobs stays small.
"""
