"""One TSV helper for every table: hostile tag values round-trip and never swallow rows."""

from __future__ import annotations

import csv

import pytest

from pmlseg.errors import PmlsegError
from pmlseg.tables import parse_tsv, read_tsv, write_tsv

HOSTILE = ['"quoted start', 'tab\there', 'two\nlines', 'carriage\rreturn', '""', '"', 'end quote"', '\t', '']


def test_hostile_cells_round_trip(tmp_path):
    rows = [{"n": str(i), "series_description": d, "after": f"row {i}"} for i, d in enumerate(HOSTILE)]
    write_tsv(tmp_path / "t.tsv", rows, ["n", "series_description", "after"])
    back = read_tsv(tmp_path / "t.tsv")
    assert len(back) == len(rows)
    for got, want in zip(back, rows):
        assert got["n"] == want["n"] and got["after"] == want["after"]  # nothing swallowed or shifted
        assert got["series_description"] == want["series_description"].replace("\r", "\n")
    # what pandas/R/csv read: the same rows
    with open(tmp_path / "t.tsv", newline="") as fp:
        assert [r["after"] for r in csv.DictReader(fp, delimiter="\t")] == [r["after"] for r in rows]
    assert parse_tsv((tmp_path / "t.tsv").read_text()) == back


def test_missing_values_and_missing_file(tmp_path):
    write_tsv(tmp_path / "t.tsv", [{"a": None, "b": 1.5}, {"b": 2}], ["a", "b"])
    assert (tmp_path / "t.tsv").read_text() == "a\tb\n\t1.5\n\t2\n"
    assert read_tsv(tmp_path / "none.tsv", missing_ok=True) == []
    with pytest.raises(PmlsegError, match="none.tsv: not found"):
        read_tsv(tmp_path / "none.tsv")
