"""Metric points as a pandas DataFrame, for notebooks. pandas is optional: imported only
when a frame is asked for, with an error that says how to get it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aimc_spec.metric_record import METRIC_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

PANDAS_MISSING = (
    "metrics as a DataFrame need pandas, which aimc does not install: pip install pandas"
)


def metrics_frame(points: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per metric point, in the columns of metrics.csv (then any others a point
    has); an empty frame of those columns when there are no points yet."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(PANDAS_MISSING) from None
    extra = [k for point in points for k in point if k not in METRIC_COLUMNS]
    columns = [*METRIC_COLUMNS, *dict.fromkeys(extra)]
    return pd.DataFrame.from_records(list(points), columns=columns)
