"""Vectorised reading of the datasets' text files, counting malformed rows with their line numbers.

Comma-separated files go through Arrow's CSV reader (streamed in blocks, every field kept as a
string) and whitespace-separated ones through pandas; numbers are converted column-wise. Each
function reports rows it cannot use to a :class:`~aubench.data.table.SkipReport` with ``file:line``
examples, and returns the 1-based physical line number of every row it keeps.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from aubench.data.table import DatasetFormatError, SkipReport

MALFORMED = "malformed row (wrong number of fields)"


def header_fields(path: Path, delimiter: str = ",") -> list[str]:
    """The first line's fields, stripped (a UTF-8 byte-order mark is ignored)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        first = handle.readline()
    if not first.strip():
        raise DatasetFormatError(f"{path} is empty or starts with a blank line; expected a header")
    return [field.strip() for field in next(csv.reader([first], delimiter=delimiter))]


def iter_csv(
    path: Path,
    names: Sequence[str],
    *,
    header: bool,
    report: SkipReport,
    delimiter: str = ",",
    block_size: int = 1 << 20,
    types: dict[str, pa.DataType] | None = None,
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Stream ``path`` as record batches of columns ``names`` with their line numbers.

    Columns are strings unless ``types`` gives another Arrow type (numbers parse in C, an empty
    field is null, and a value that does not parse raises ``pyarrow.ArrowInvalid``). Rows with
    another number of fields are counted as :data:`MALFORMED`; blank lines are ignored.
    ``header``: whether the first line is a header (it is skipped; ``names`` are used).
    """
    types = {name: (types or {}).get(name, pa.string()) for name in names}
    invalid: list[int] = []

    def on_invalid(row) -> str:
        invalid.append(row.number if row.number is not None else -1)
        return "skip"

    options = {
        "read_options": pacsv.ReadOptions(
            use_threads=False,
            block_size=block_size,
            column_names=list(names),
            skip_rows=int(header),
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types=types, null_values=[""], strings_can_be_null=False
        ),
    }
    # A Python file object: Arrow then reads one block at a time (given a path, it reads ahead
    # the whole file, which for AffectNet's training.csv is half a gigabyte).
    with open(path, "rb") as handle:
        yield from _numbered(pacsv.open_csv(handle, **options), invalid, 1 + int(header))
    report.add(MALFORMED, len(invalid), (f"{path}:{n}" for n in invalid[:3]))


def _numbered(reader, invalid: list[int], next_line: int):
    """The reader's batches with physical line numbers (skipping ``invalid`` lines) and without
    blank rows."""
    consumed = 0
    for batch in reader:
        pending = np.asarray(invalid[consumed:], dtype=np.int64)
        candidates = np.arange(next_line, next_line + batch.num_rows + len(pending))
        lines = candidates[~np.isin(candidates, pending)][: batch.num_rows]
        if batch.num_rows:
            next_line = int(lines[-1]) + 1
            consumed += int((pending < next_line).sum())
        blank = np.ones(batch.num_rows, dtype=bool)
        for column in batch.columns:
            empty = pc.equal(column, "") if pa.types.is_string(column.type) else column.is_null()
            blank &= pc.fill_null(empty, True).to_numpy(zero_copy_only=False)
        if blank.any():
            keep = pa.array(np.flatnonzero(~blank))
            batch, lines = batch.take(keep), lines[~blank]
        yield batch, lines


def read_csv(
    path: Path,
    names: Sequence[str],
    *,
    header: bool,
    report: SkipReport,
    delimiter: str = ",",
) -> tuple[pa.Table, np.ndarray]:
    """All of :func:`iter_csv` at once: a table of string columns and the line numbers."""
    batches, lines = [], []
    for batch, batch_lines in iter_csv(
        path, names, header=header, report=report, delimiter=delimiter
    ):
        batches.append(batch)
        lines.append(batch_lines)
    schema = pa.schema([(name, pa.string()) for name in names])
    table = pa.Table.from_batches(batches, schema=schema)
    return table, np.concatenate(lines) if lines else np.zeros(0, dtype=np.int64)


def read_whitespace(
    path: Path, fields: int, *, report: SkipReport
) -> tuple[pd.DataFrame, np.ndarray]:
    """A whitespace-separated text file (tabs or runs of spaces) as ``fields`` string columns
    ``0 … fields − 1`` and 1-based line numbers; rows with another field count are malformed."""
    text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    rows = pd.Series(text.splitlines(), dtype="str")
    counts = rows.str.split().str.len().to_numpy()
    lines = np.arange(1, len(rows) + 1)
    bad = (counts != fields) & (counts > 0)
    report.add(MALFORMED, int(bad.sum()), (f"{path}:{n}" for n in lines[bad][:3]))
    keep = counts == fields
    frame = rows[keep].str.split(expand=True, n=fields - 1).reset_index(drop=True)
    frame = frame.reindex(columns=range(fields), fill_value="")
    return frame, lines[keep]


def to_numbers(
    strings: pa.Array | pd.Series, *, empty_ok: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Parse strings as float64; returns ``(values, bad)`` where ``bad`` marks unparsable text.

    ``nan``/``inf`` literals parse (to NaN/±inf); an empty field is NaN, and bad unless
    ``empty_ok``.
    """
    if not isinstance(strings, pd.Series):
        try:  # fast path: Arrow parses plain numbers, nan and inf
            values = pc.cast(strings, pa.float64()).to_numpy(zero_copy_only=False)
            return values, np.zeros(len(values), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    series = strings if isinstance(strings, pd.Series) else strings.to_pandas()
    series = series.astype("str")
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    stripped = series.str.strip().str.lower()
    literal = stripped.isin(["nan", "-nan", "+nan"]).to_numpy()
    empty = (stripped == "").to_numpy()
    bad = np.isnan(values) & ~literal & (~empty | (not empty_ok))
    return values, bad


def to_ints(strings: pa.Array | pd.Series, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse integer ids in ``[low, high]`` (``3``, ``3.0`` and ``3.0000000e+00`` all give 3);
    returns ``(int64 values, bad)``; bad rows hold −1."""
    values, bad = to_numbers(strings)
    with np.errstate(invalid="ignore"):
        bad |= (
            ~np.isfinite(values) | (values != np.round(values)) | (values < low) | (values > high)
        )
    return np.where(bad, -1, np.nan_to_num(values)).astype(np.int64), bad


def split_numbers(
    strings: pa.Array, separator: str, count: int, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``count`` numbers joined by ``separator`` (e.g. AffectNet's ``x0;y0;…``) as an
    (N, count) array; ``bad`` marks rows with another count or an unparsable token (their values
    are NaN, or 0 for integer dtypes)."""
    strings = pc.utf8_trim_whitespace(strings)
    lists = pc.split_pattern(strings, separator)
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    bad = lengths != count
    good = pa.array(np.flatnonzero(~bad))
    flat = pc.list_flatten(lists.take(good))
    try:
        values = pc.cast(flat, pa.from_numpy_dtype(np.dtype(dtype))).to_numpy(zero_copy_only=False)
        token_bad = np.zeros(len(values), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed, token_bad = to_numbers(flat)
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
        if info is not None:
            with np.errstate(invalid="ignore"):
                token_bad |= ~np.isfinite(parsed) | (parsed < info.min) | (parsed > info.max)
                token_bad |= parsed != np.round(parsed)
            parsed = np.where(token_bad, 0, np.nan_to_num(parsed))
        values = parsed.astype(dtype)
    fill = 0 if np.issubdtype(dtype, np.integer) else np.nan
    out = np.full((len(lengths), count), fill, dtype=dtype)
    rows = values.reshape(-1, count)
    row_bad = token_bad.reshape(-1, count).any(axis=1)
    good_rows = np.flatnonzero(~bad)
    out[good_rows[~row_bad]] = rows[~row_bad]
    bad[good_rows[row_bad]] = True
    return out, bad
