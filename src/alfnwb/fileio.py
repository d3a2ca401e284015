"""Small file-writing helpers shared by the batch manifest and the reanalysis catalog."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_parquet_atomic(df, path: str | Path) -> None:
    """Write a DataFrame to parquet atomically: a killed process leaves the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix='.parquet.partial')
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
