"""The metric record every run emits (one per evaluation): its columns and CSV form.

Torch-free, so the API serves metrics as CSV in exactly the columns `aimc run` writes
to metrics.csv.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

METRIC_COLUMNS = [
    "step",
    "samples",
    "epoch",
    "sim_time_ns",
    "wall_s",
    "lr",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "grad_norm_sq",
    "saturation",
    "near_bound_fraction",
    "energy_pj",
]


def metrics_csv(records: Iterable[dict[str, Any]]) -> str:
    """CSV text: a header of METRIC_COLUMNS, one row per record, empty cells for None."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record.get(k) is None else record[k] for k in METRIC_COLUMNS})
    return buffer.getvalue()
