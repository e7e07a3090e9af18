"""Every TSV pmlseg writes or reads goes through here, so tag values from scanners cannot break a table.

Tab-separated with the csv module's quoting (RFC 4180 style, as pandas and R read it): a cell that holds
a quote, a tab or a newline (a SeriesDescription can hold all three) is quoted and round-trips, and
never swallows the rows after it. Carriage returns in a cell become newlines (the csv reader would
end the row at a bare CR). Writes are atomic (pmlseg.atomic).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable
from pathlib import Path

from pmlseg.atomic import write_text
from pmlseg.errors import PmlsegError

DIALECT = {"delimiter": "\t", "quotechar": '"', "quoting": csv.QUOTE_MINIMAL, "lineterminator": "\n",
           "doublequote": True}


def plain_cell(value) -> str:
    """None -> empty, everything else str()."""
    return "" if value is None else str(value)


def typed_row(row: dict) -> dict:
    """A row read back with types (the inverse of plain_cell): '' -> None, 'True'/'False' -> bool, numbers
    -> float, other text kept; so a later stage can compute on what an earlier one wrote."""
    out = {}
    for k, v in row.items():
        if not isinstance(v, str):
            out[k] = v
        elif v == "":
            out[k] = None
        elif v in ("True", "False"):
            out[k] = v == "True"
        else:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def format_tsv(rows: Iterable[dict], columns: list[str], cell: Callable[[object], str] = plain_cell) -> str:
    """The table as text: a header with exactly ``columns``, one row per dict (missing keys are empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, **DIALECT)
    w.writerow(columns)
    for r in rows:
        w.writerow([cell(r.get(c)).replace("\r\n", "\n").replace("\r", "\n") for c in columns])
    return buf.getvalue()


def write_tsv(path: str | Path, rows: Iterable[dict], columns: list[str],
              cell: Callable[[object], str] = plain_cell) -> None:
    """Atomically write a TSV with exactly ``columns``; ``cell`` turns a value into text (e.g. float precision)."""
    write_text(path, format_tsv(rows, columns, cell))


def parse_tsv(text: str) -> list[dict]:
    """Rows of a TSV text with a header line, as dicts (cells are strings)."""
    return list(csv.DictReader(io.StringIO(text, newline=""), **DIALECT))


def read_tsv(path: str | Path, missing_ok: bool = False) -> list[dict]:
    """Rows of a TSV file; a missing file is an error naming it (or no rows with ``missing_ok``)."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return []
        raise PmlsegError(f"{path}: not found")
    with open(path, newline="", encoding="utf-8") as fp:
        return list(csv.DictReader(fp, **DIALECT))


def parse_date(text: str, where: str = "") -> dt.date | None:
    """DICOM (YYYYMMDD) or ISO (YYYY-MM-DD) date; empty -> None; anything else is an error."""
    text = (text or "").strip()
    if not text:
        return None
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise PmlsegError(f"{where}: date {text!r} is neither YYYYMMDD nor YYYY-MM-DD")
