"""aimc_study: many jobs compared with seeds, without torch.

The study file (design, checks, formulas), its expansion into jobs and sweeps (plan),
running it on the service (remote) and collecting runs into folders (runs), the
statistics over seeds, the comparison tables and plots, and the report with claim
verdicts. It builds on aimc_spec (one job) and never imports torch, the engine, the store
or the service: local runs are started by the CLI, which owns the engine.
"""
