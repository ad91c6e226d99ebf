"""The flat-array path table: its invariants, its errors and its read-only arrays."""

from __future__ import annotations

import numpy as np
import pytest

from perfmark.attribution.domain import PathTable, path_table_from_lists
from perfmark.errors import ValidationError


def _table(**overrides: object) -> PathTable:
    fields: dict[str, object] = {
        "channel_names": ("a", "b"),
        "channels": np.array([0, 1, 1]),
        "offsets": np.array([0, 2, 3]),
        "conversions": np.array([1.0, 2.0]),
        "value": np.array([10.0, 0.0]),
        "nulls": np.array([0.0, 3.0]),
    }
    fields.update(overrides)
    return PathTable(**fields)  # type: ignore[arg-type]


def test_properties_and_read_only_arrays() -> None:
    channels = np.array([0, 1, 1], dtype=np.int32)
    table = _table(channels=channels)
    assert table.n_paths == 2 and table.n_channels == 2 and table.n_touches == 3
    assert table.lengths.tolist() == [2, 1]
    assert table.row_of_touch.tolist() == [0, 0, 1]
    assert (table.total_conversions, table.total_value, table.total_nulls) == (3.0, 10.0, 3.0)
    with pytest.raises(ValueError, match="read-only"):
        table.conversions[0] = 5.0
    channels[0] = 1  # the caller's array is copied, not frozen or shared
    assert table.channels[0] == 0


def _error(**overrides: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _table(**overrides)
    return caught.value


def test_no_paths_is_an_error() -> None:
    error = _error(
        channels=np.array([], dtype=np.int32),
        offsets=np.array([0]),
        conversions=np.array([]),
        value=np.array([]),
        nulls=np.array([]),
    )
    assert error.field == "path" and "empty" in error.message


def test_a_path_without_touches_names_its_row() -> None:
    error = _error(offsets=np.array([0, 3, 3]))
    assert error.field == "path" and "row 2" in error.message


def test_negative_or_missing_numbers_name_row_and_value() -> None:
    error = _error(conversions=np.array([1.0, -4.0]))
    assert error.field == "total_conversions"
    assert "row 2" in error.message and "-4.0" in error.message
    error = _error(value=np.array([np.inf, 0.0]))
    assert error.field == "total_conversion_value" and "row 1" in error.message
    error = _error(nulls=np.array([np.nan, 0.0]))
    assert error.field == "total_null" and "nan" in error.message


def test_shapes_and_indices_must_agree() -> None:
    assert _error(conversions=np.array([1.0])).field == "total_conversions"
    assert _error(channels=np.array([0, 2, 1])).field == "channels"
    assert _error(offsets=np.array([0, 2, 4])).field == "offsets"
    assert _error(channel_names=("a", "a")).field == "channel_names"


def test_lags_are_per_touch_and_non_negative() -> None:
    assert _error(lag_days=np.array([1.0])).field == "lag_days"
    error = _error(lag_days=np.array([1.0, 0.0, -2.0]))
    assert error.field == "lag_days"
    assert "touch 1 at row 2" in error.message and "-2.0" in error.message


def test_from_lists_rejects_blank_channels_and_ragged_lags() -> None:
    with pytest.raises(ValidationError) as caught:
        path_table_from_lists([["a", ""]], [1])
    assert caught.value.field == "path" and "row 1" in caught.value.message
    with pytest.raises(ValidationError) as caught:
        path_table_from_lists([["a", "b"]], [1], lag_days=[[1.0]])
    assert caught.value.field == "lag_days"
