"""aimc_engine: simulate training on analog in-memory computing hardware.

Importing the package loads no torch: the API process imports only the job
spec. Torch-side entry points live in `aimc_engine.runner`.
"""

__version__ = "0.7.0"
