"""aimc_spec: everything about a job that needs no torch.

The job spec and presets, the vocabulary (schedule names, job states), sweep
expansion, cost, metric record formats and dataset-file checks. The API, the
client, the CLI's remote commands, the store and the worker all import it; it
imports nothing of theirs and never torch, so a process that only validates,
prices or lists jobs stays small.
"""
