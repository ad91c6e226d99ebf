"""What the pages share: the container, the period parameter and chart specs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request

from perfmark.dashboard.services import ALLOWED_PERIOD_DAYS
from perfmark.services.container import Container
from perfmark.web.api.deps import get_container

__all__ = ["ContainerDep", "DaysQuery", "chart_spec", "page_context", "query_string"]

ContainerDep = Annotated[Container, Depends(get_container)]
DaysQuery = Annotated[int, Query(ge=1, le=366, description="Period length in days")]


def chart_spec(
    kind: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[Any], str]],
    *,
    horizontal: bool = False,
) -> dict[str, Any]:
    """What dashboard.js draws: labels and series (label, values as text, axis y or y2)."""
    return {
        "type": kind,
        "horizontal": horizontal,
        "labels": list(labels),
        "series": [
            {"label": label, "values": ["0" if v is None else str(v) for v in values], "axis": axis}
            for label, values, axis in series
        ],
    }


def page_context(request: Request, key: str, title: str, **values: Any) -> dict[str, Any]:
    """The values every page template reads, plus its own."""
    context: dict[str, Any] = {
        "page_key": key,
        "title": title,
        "period_choices": ALLOWED_PERIOD_DAYS,
        "query": dict(request.query_params),
    }
    context.update(values)
    return context


def query_string(values: Mapping[str, Any]) -> str:
    """A query string of the non-empty values (for links that keep the page's filters)."""
    return urlencode({key: value for key, value in values.items() if value not in (None, "")})
