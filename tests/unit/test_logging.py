"""Log format: JSON for collectors, text for a person at a terminal."""

from __future__ import annotations

import logging

import pytest
from pythonjsonlogger.json import JsonFormatter

from surge.config import Settings
from surge.observability.logging import configure_logging


class _Terminal:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    ("log_format", "tty", "json"),
    [
        ("auto", True, False),
        ("auto", False, True),
        ("json", True, True),
        ("text", False, False),
    ],
)
def test_auto_logs_text_on_a_terminal_and_json_elsewhere(
    monkeypatch: pytest.MonkeyPatch, log_format: str, tty: bool, json: bool
) -> None:
    monkeypatch.setattr("sys.stderr", _Terminal(tty))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(Settings(log_format=log_format))
        assert isinstance(root.handlers[0].formatter, JsonFormatter) is json
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
