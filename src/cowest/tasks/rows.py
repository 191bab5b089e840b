"""Reading raw rows for the task loaders: JSONL, JSON arrays, CSV and Hugging Face datasets, each row with its
file and line so that a bad value can be reported where it is.

Loaders turn a `Row` into a `Sample` with `Row.get`, which fails naming the file, the line and the field; nothing
is skipped silently.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from cowest.core.files import DATA_LIMIT, read_bounded, regular_file
from cowest.core.errors import CowestError, DataError, UnknownNameError, require
from cowest.core.records import Sample

_MISSING = object()


@dataclass(frozen=True)
class Row:
    """One raw row and where it came from (`line` is 1-based; for a hub dataset it is the row number)."""

    data: dict[str, Any]
    path: str
    line: int

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(message, path=self.path, line=self.line, field=field)

    def get(self, key: str, kind: type | tuple[type, ...] = str, *, alt: Iterable[str] = (), default: Any = _MISSING,
            nonempty: bool = True) -> Any:
        """The value under `key` (or the first present of `alt`), checked to be of `kind`.

        A missing key fails unless `default` is given; an empty string or list fails when `nonempty`.
        """
        for k in (key, *alt):
            if k in self.data and self.data[k] is not None:
                value = self.data[k]
                break
        else:
            if default is not _MISSING:
                return default
            raise self.error("missing" + (f" (also looked for {', '.join(repr(a) for a in alt)})" if alt else ""),
                             key)
        if kind is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)  # CSV cells and some JSON dumps carry numbers as strings
        if isinstance(value, bool) and kind is int or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(t.__name__ for t in kind)
            raise self.error(f"expected {names}, got {type(value).__name__} {value!r:.60}", k)
        if nonempty and isinstance(value, (str, list, dict)) and not (value.strip() if isinstance(value, str) else value):
            raise self.error("is empty", k)
        return value

    def str_list(self, key: str, *, alt: Iterable[str] = ()) -> list[str]:
        """A non-empty list of non-empty strings (a lone string is accepted as a one-element list)."""
        value = self.get(key, (list, str), alt=alt)
        items = [value] if isinstance(value, str) else value
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"item {i} must be a non-empty string, got {item!r:.60}", key)
        return [s.strip() for s in items]


def _line_of(text: str, pos: int, cache: list[int]) -> int:
    # cache = [last_pos, last_line]: positions only grow, so counting newlines incrementally stays linear.
    cache[1] += text.count("\n", cache[0], pos)
    cache[0] = pos
    return cache[1]


def read_json_rows(path: Path) -> list[Row]:
    """Rows of a JSON Lines file or of a JSON file holding an array of objects (IfQA's upstream format).

    Fails on malformed JSON, a non-object row, or a file without rows.
    """
    try:
        # -sig: tolerate a byte-order mark (Excel exports)
        text = read_bounded(path, DATA_LIMIT, "data file", DataError).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=str(path)) from None
    stripped = text.lstrip()
    rows: list[Row] = []
    if stripped.startswith("["):
        dec, pos, cache = json.JSONDecoder(), text.index("[") + 1, [0, 1]
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text):
                raise DataError("malformed JSON (unterminated array)", path=str(path), line=_line_of(text, pos, cache))
            if text[pos] == "]":
                break
            line = _line_of(text, pos, cache)
            try:
                obj, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise DataError(f"malformed JSON ({e.msg})", path=str(path), line=e.lineno) from None
            except RecursionError:
                raise DataError("JSON nested too deep", path=str(path), line=line) from None
            except ValueError as e:  # a number of more than 4,300 digits
                raise DataError(f"{str(e).split(';')[0]}", path=str(path), line=line) from None
            rows.append(_as_row(obj, str(path), line))
    elif _is_single_object(stripped):
        obj = _loads(stripped, path, 1)
        rows = [_as_row(obj, str(path), 1)]
    else:
        # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters splitlines() breaks on.
        for i, one in enumerate(text.split("\n"), 1):
            if one.strip():
                rows.append(_as_row(_loads(one, path, i), str(path), i))
    if not rows:
        raise DataError("no rows (empty file)", path=str(path))
    return rows


def _is_single_object(text: str) -> bool:
    # A pretty-printed single JSON object (e.g. PubMedQA's ori_pqal.json: {pubid: {...}, ...}).
    if not text.startswith("{"):
        return False
    first = text.split("\n", 1)[0].strip()
    return first == "{"


def _loads(s: str, path: Path, line: int) -> Any:
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg}, column {e.colno})", path=str(path), line=line + e.lineno - 1) from None
    except RecursionError:  # e.g. a line of 100,000 nested brackets
        raise DataError("JSON nested too deep", path=str(path), line=line) from None
    except ValueError as e:  # a number of more than 4,300 digits
        raise DataError(f"{str(e).split(';')[0]}", path=str(path), line=line) from None


def _as_row(obj: Any, path: str, line: int) -> Row:
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=line)
    for key, value in obj.items():
        if not _encodable(value):  # a JSON escape such as "\ud800" decodes to text no file can hold
            raise DataError("holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which cannot be written as "
                            "UTF-8; fix or remove that escape", path=path, line=line, field=str(key))
    return Row(obj, path, line)


def _encodable(value: Any) -> bool:
    """Every string in `value` (nested in lists and objects too) can be written as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def read_csv_rows(path: Path, columns: list[str] | None = None) -> list[Row]:
    """Rows of a CSV file. With `columns`, the file has no header and each row must have exactly those columns;
    without, the first line is the header."""
    regular_file(path, "data file", DataError)
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror or e})", path=str(path)) from None
    rows: list[Row] = []
    with f:
        reader = csv.reader(f)
        header = columns
        if header is None:
            header = next(reader, None)
            if header is None:
                raise DataError("no rows (empty file)", path=str(path))
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise DataError(f"malformed CSV ({e})", path=str(path), line=start) from None
            if not cells:
                continue
            if len(cells) != len(header):
                raise DataError(f"expected {len(header)} columns ({', '.join(header)}), got {len(cells)}",
                                path=str(path), line=start)
            rows.append(Row(dict(zip(header, cells)), str(path), start))
    if not rows:
        raise DataError("no rows (empty file)", path=str(path))
    return rows


def hub_rows(name: str, config: str | None, split: str, splits: dict[str, str]) -> list[Row]:
    """Rows of a Hugging Face dataset split; `splits` maps cowest split names to the hub's.

    Needs network (or a warm `datasets` cache); fails with the command that works offline instead.
    """
    if split not in splits:
        raise UnknownNameError(f"split of {name}", split, list(splits))
    datasets = require("datasets", "train")
    try:
        ds = datasets.load_dataset(name, config, split=splits[split]) if config else \
            datasets.load_dataset(name, split=splits[split])
    except Exception as e:  # noqa: BLE001 - network, auth and hub errors all end the same way for the user
        what = f"{name}" + (f" ({config})" if config else "") + f" split '{splits[split]}'"
        raise CowestError(f"could not load the Hugging Face dataset {what}: {type(e).__name__}: {e}. "
                          "Without network, download the files and set task.data to their folder.") from None
    where = f"hf:{name}" + (f"/{config}" if config else "") + f"/{splits[split]}"
    return [Row(dict(r), where, i) for i, r in enumerate(ds, 1)]


def convert(rows: list[Row], to_sample: Callable[[Row], Sample]) -> list[Sample]:
    """Convert rows and check that sample ids are unique (later stages key drafts and traces by id)."""
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for row in rows:
        s = to_sample(row)
        if s.id in seen:
            raise row.error(f"duplicate id {s.id!r} (first on line {seen[s.id]})", "id")
        seen[s.id] = row.line
        samples.append(s)
    return samples


def split_files(dirs: list[Path], splits: Iterable[str] = ("train", "dev", "test"),
                exts: Iterable[str] = (".jsonl", ".json")) -> dict[str, Path]:
    """`{split: path}` for the first `<dir>/<split><ext>` found, dirs tried in order."""
    out: dict[str, Path] = {}
    for d in dirs:
        for split in splits:
            for ext in exts:
                p = d / f"{split}{ext}"
                if split not in out and p.is_file():
                    out[split] = p
        if out:
            return out
    return out
