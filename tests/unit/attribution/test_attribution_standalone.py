"""Reading ChannelAttribution-format CSV and Parquet files, and the errors bad files give."""

from __future__ import annotations

import os
import select
import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.attribution import standalone
from perfmark.attribution.domain import markov_model
from perfmark.attribution.standalone import (
    PathColumns,
    paths_from_arrow,
    paths_from_strings,
    read_paths,
)
from perfmark.errors import ValidationError

HEADER = "path,total_conversions,total_conversion_value,total_null\n"


def _csv(tmp_path: Path, body: str, header: str = HEADER, name: str = "paths.csv") -> Path:
    target = tmp_path / name
    target.write_text(header + body, encoding="utf-8")
    return target


def test_reads_csv_in_channelattribution_format(tmp_path: Path) -> None:
    source = _csv(tmp_path, "a > b > c,2,20.5,1\nb,0,0,4\n c>a ,1,3,0\n")
    table = read_paths(source)
    assert table.channel_names == ("a", "b", "c")
    assert table.channels.tolist() == [0, 1, 2, 1, 2, 0]
    assert table.offsets.tolist() == [0, 3, 4, 6]
    assert table.conversions.tolist() == [2, 0, 1]
    assert table.value.tolist() == [20.5, 0, 3]
    assert table.nulls.tolist() == [1, 4, 0]


def test_reads_semicolon_csv_without_value_or_null_columns(tmp_path: Path) -> None:
    source = _csv(tmp_path, "eta > iota;3\nalpha;1\n", header="path;total_conversions\n")
    table = read_paths(source, csv_delimiter=";")
    assert table.channel_names == ("eta", "iota", "alpha")
    assert table.value.tolist() == [0, 0]
    assert table.nulls.tolist() == [0, 0]


def test_reads_parquet_with_custom_columns_and_separator(tmp_path: Path) -> None:
    target = tmp_path / "journeys.parquet"
    pq.write_table(
        pa.table(
            {
                "journey": ["seo|email", "email"],
                "conv": [4, 1],
                "revenue": [40.0, 9.5],
                "lost": [2, 3],
            }
        ),
        target,
    )
    columns = PathColumns(path="journey", conversions="conv", value="revenue", nulls="lost")
    table = read_paths(target, columns=columns, sep="|")
    assert table.channel_names == ("seo", "email")
    assert table.value.tolist() == [40.0, 9.5]
    assert markov_model(table).total_conversions == 5


def test_paths_from_strings_matches_the_file_reader(tmp_path: Path) -> None:
    source = _csv(tmp_path, "a > b,1,2,3\nb,4,5,6\n")
    from_file = read_paths(source)
    in_memory = paths_from_strings(["a > b", "b"], [1, 4], [2, 5], [3, 6])
    for field in ("channels", "offsets", "conversions", "value", "nulls"):
        assert np.array_equal(getattr(from_file, field), getattr(in_memory, field)), field


def _error(call: object, *args: object, **kwargs: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    error = _error(read_paths, _csv(tmp_path, ""))
    assert error.field == "path"
    assert "no rows" in error.message


def test_missing_column_is_named_with_the_columns_found(tmp_path: Path) -> None:
    source = _csv(tmp_path, "a,1\n", header="route,total_conversions\n")
    error = _error(read_paths, source)
    assert error.field == "path"
    assert "'path' is missing" in error.message and "'route'" in error.message


def test_an_explicitly_named_value_column_must_exist(tmp_path: Path) -> None:
    source = _csv(tmp_path, "a,1\n", header="path,total_conversions\n")
    error = _error(read_paths, source, columns=PathColumns(value="revenue"))
    assert error.field == "revenue"


def test_negative_conversions_name_the_row_and_value(tmp_path: Path) -> None:
    error = _error(read_paths, _csv(tmp_path, "a,1,0,0\nb,-2,0,0\n"))
    assert error.field == "total_conversions"
    assert "row 2" in error.message and "-2" in error.message


def test_negative_nulls_and_nan_value_are_errors(tmp_path: Path) -> None:
    error = _error(read_paths, _csv(tmp_path, "a,1,0,-1\n"))
    assert error.field == "total_null" and "row 1" in error.message
    table = pa.table(
        {"path": ["a", "b"], "total_conversions": [1, 1], "total_conversion_value": [1.0, np.nan]}
    )
    error = _error(paths_from_arrow, table)
    assert error.field == "total_conversion_value" and "row 2" in error.message


def test_text_in_a_number_column_names_row_and_value(tmp_path: Path) -> None:
    error = _error(read_paths, _csv(tmp_path, "a,1,0,0\nb,lots,0,0\n"))
    assert error.field == "total_conversions"
    assert "row 2" in error.message and "'lots'" in error.message


def test_missing_number_names_the_row(tmp_path: Path) -> None:
    error = _error(read_paths, _csv(tmp_path, "a,1,0,0\nb,,0,0\n"))
    assert error.field == "total_conversions" and "row 2" in error.message


@pytest.mark.parametrize(
    ("body", "row"),
    [("a > b,1,0,0\na >  > b,1,0,0\n", 2), ("a > ,1,0,0\n", 1), ('" ",1,0,0\n', 1)],
)
def test_malformed_paths_name_the_row(tmp_path: Path, body: str, row: int) -> None:
    error = _error(read_paths, _csv(tmp_path, body))
    assert error.field == "path"
    assert f"row {row}" in error.message and "empty channel" in error.message


def test_unknown_separator_suggests_the_one_the_paths_use(tmp_path: Path) -> None:
    error = _error(read_paths, _csv(tmp_path, "seo|email,1,0,0\nemail,1,0,0\n"))
    assert error.field == "sep"
    assert "'|'" in error.message and "row 1" in error.message


def test_blank_separator_is_an_error() -> None:
    error = _error(paths_from_strings, ["a"], [1], sep="")
    assert error.field == "sep"


def test_paths_that_are_not_text_are_an_error() -> None:
    error = _error(paths_from_arrow, pa.table({"path": [1, 2], "total_conversions": [1, 1]}))
    assert error.field == "path" and "int64" in error.message


def test_no_journeys_at_all_is_an_error() -> None:
    error = _error(paths_from_strings, ["a", "b"], [0, 0], None, [0, 0])
    assert error.field == "total_conversions"


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    error = _error(read_paths, tmp_path / "paths.xlsx")
    assert error.field == "file_format"
    error = _error(read_paths, tmp_path / "absent.csv")
    assert error.field == "source" and "absent.csv" in error.message


def test_a_trailing_separator_names_its_own_row(tmp_path: Path) -> None:
    error = _error(read_paths, _csv(tmp_path, "b,1,0,0\na >,1,0,0\nc > d,1,0,0\n"))
    assert error.field == "path" and "row 2" in error.message


_NAMES = st.sampled_from(["seo", "e mail", "ads", "Ünïcode", "x"])
_SPACE = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def _raw_paths(draw: st.DrawFn) -> tuple[list[str], list[list[str]] | None]:
    """Path strings with ragged spacing, and the channel lists they mean (None: malformed)."""
    rows = draw(st.integers(1, 6))
    strings: list[str] = []
    expected: list[list[str]] | None = []
    for _ in range(rows):
        channels = draw(st.lists(_NAMES, min_size=1, max_size=5))
        if draw(st.integers(0, 9)) == 0:
            channels = [*channels, ""]  # an empty channel: the input is malformed
        text = ">".join(draw(_SPACE) + c + draw(_SPACE) for c in channels)
        strings.append(text)
        if expected is not None:
            expected = None if "" in channels else [*expected, channels]
    return strings, expected


@settings(max_examples=150, deadline=None)
@given(case=_raw_paths(), wide=st.booleans())
def test_splitting_matches_a_plain_python_split(
    case: tuple[list[str], list[list[str]] | None], wide: bool
) -> None:
    strings, expected = case
    sep = " > "
    if wide:  # a two-character separator takes the pyarrow-kernel path instead of the bytes one
        strings = [text.replace(">", "->") for text in strings]
        sep = " -> "
    conversions = [1] * len(strings)
    if expected is None:
        error = _error(paths_from_strings, strings, conversions, sep=sep)
        assert error.field == "path" and "empty channel" in error.message
        return
    table = paths_from_strings(strings, conversions, sep=sep)
    decoded = [
        [table.channel_names[c] for c in table.channels[a:b]]
        for a, b in zip(table.offsets[:-1], table.offsets[1:], strict=True)
    ]
    assert decoded == expected


_CHANNEL_OR_BLANK = st.sampled_from(["seo", "e mail", "ads", "Ünïcode", "x", ""])


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(_CHANNEL_OR_BLANK, min_size=1, max_size=6), min_size=1, max_size=12),
    spaces=st.lists(_SPACE, min_size=2, max_size=2),
    skipped=st.integers(0, 2),
    block_bytes=st.integers(1, 9),
    wide=st.booleans(),
)
def test_parallel_parts_and_block_scan_match_a_plain_python_split(
    rows: list[list[str]], spaces: list[str], skipped: int, block_bytes: int, wide: bool
) -> None:
    """Large inputs are split into row ranges on threads and scanned in blocks; forcing both
    onto tiny inputs (ranges of one row, blocks of a few bytes, a table slice that starts
    just after a separator) must give the same table, or the same error row, as Python."""
    core = "->" if wide else ">"
    strings = [core.join(spaces[0] + channel + spaces[1] for channel in row) for row in rows]
    # Rows cut off by the slice end with the separator: the byte before the first kept path.
    table = pa.table(
        {
            "path": [f"seo {core}"] * skipped + strings,
            "total_conversions": [1.0] * (skipped + len(strings)),
        }
    ).slice(skipped)
    malformed = [i for i, row in enumerate(rows) if "" in row]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(standalone, "_PART_MIN_BYTES", 1)
        patch.setattr(standalone, "_SCAN_BLOCK_BYTES", block_bytes)
        patch.setattr(standalone, "_cpu_count", lambda: 3)
        if malformed:
            error = _error(paths_from_arrow, table, sep=f" {core} ")
            assert error.field == "path"
            assert f"at row {malformed[0] + 1} is" in error.message
            return
        table_read = paths_from_arrow(table, sep=f" {core} ")
    decoded = [
        [table_read.channel_names[c] for c in table_read.channels[a:b]]
        for a, b in zip(table_read.offsets[:-1], table_read.offsets[1:], strict=True)
    ]
    assert decoded == rows
    first_seen = list(dict.fromkeys(channel for row in rows for channel in row))
    assert list(table_read.channel_names) == first_seen


def test_a_forked_child_parses_in_parallel_parts_with_its_own_threads() -> None:
    """The threads that parse large inputs are kept between calls; a forked child inherits
    the pool without them, so it must start its own rather than wait forever."""
    paths = [f"seo > ads > {'email > ' * (i % 4)}direct" for i in range(400)]
    table = pa.table({"path": paths, "total_conversions": [1.0] * len(paths)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(standalone, "_PART_MIN_BYTES", 1)
        # Two parts: one submitted to the pool per call, which an idle inherited (dead)
        # thread would claim: with more, a later submission would start a thread anyway.
        patch.setattr(standalone, "_cpu_count", lambda: 2)
        expected = paths_from_arrow(table)  # the parent's pool now has an idle thread
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child, reports through the pipe
            os.close(read)
            try:
                again = paths_from_arrow(table)
                same = np.array_equal(again.channels, expected.channels) and (
                    again.channel_names == expected.channel_names
                )
                os.write(write, b"same" if same else b"different")
            finally:
                os._exit(0)
        os.close(write)
        try:
            ready, _, _ = select.select([read], [], [], 60)
            answer = os.read(read, 16) if ready else b"no answer in 60 s"
        finally:
            os.close(read)
            if not ready:
                os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
    assert answer == b"same"
