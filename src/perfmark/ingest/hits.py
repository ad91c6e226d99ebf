"""What a tracking request carries, parsed once from the raw HTTP request."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Hit", "ParameterTooLong", "TooManyParameters"]


class ParameterTooLong(ValueError):
    """A query parameter above the max_param_chars setting."""

    def __init__(self, name: str, length: int, limit: int) -> None:
        super().__init__(
            f"parameter {name[:64]!r} is {length} characters long; the limit is {limit} "
            "(the max_param_chars setting)"
        )
        self.name = name


class TooManyParameters(ParameterTooLong):
    """A query string with more parameters than a tracking request ever needs."""

    def __init__(self, count_limit: int) -> None:
        ValueError.__init__(
            self,
            f"the query string has more than {count_limit} parameters; send only the "
            "parameters the link or postback uses",
        )
        self.name = "query"


@dataclass(slots=True)
class Hit:
    """One tracking request: method, query parameters, and the headers tracking reads."""

    method: str = "GET"
    #: Query parameters: the last value of each name, in the order names were first sent.
    params: dict[str, str] = field(default_factory=dict)
    user_agent: str | None = None
    referrer: str | None = None
    accept_language: str | None = None
    country: str | None = None
    ip: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        """A query parameter, or None when absent or empty."""
        return self.params.get(name) or None
