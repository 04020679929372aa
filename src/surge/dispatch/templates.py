"""Message templates: checked when a message is created, compiled once per chunk.

Templates run in Jinja2's sandbox: an organisation's staff write them, so they must not
reach Python internals. Variables are the contact's fields (``email``, ``first_name``,
``last_name``), its ``attributes``, the message's ``unsubscribe_url`` and the contact's
``preferences_url`` (its preference centre); any other name
is a mistake (a typo would otherwise render as an empty string in a million emails), so it
is refused at creation with the line it is on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from surge.delivery.html_text import html_to_text
from surge.errors import Invalid

_BLANK_RUNS = re.compile(r"\n{3,}")
VARIABLES = frozenset(
    {"email", "first_name", "last_name", "attributes", "unsubscribe_url", "preferences_url"}
)

_text_env = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_html_env = ImmutableSandboxedEnvironment(autoescape=True, keep_trailing_newline=True)


def _env(field: str) -> ImmutableSandboxedEnvironment:
    return _html_env if field == "html" else _text_env


def check(field: str, source: str) -> None:
    """Raise Invalid(field, "line N: …") unless ``source`` is a usable template."""
    env = _env(field)
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise Invalid(field, f"line {exc.lineno}: {exc.message}") from None
    unknown = meta.find_undeclared_variables(tree) - VARIABLES
    if unknown:
        name = sorted(unknown)[0]
        line = _line_of(tree, name)
        raise Invalid(
            field,
            f"line {line}: unknown variable '{name}'; use one of " + ", ".join(sorted(VARIABLES)),
        )
    try:
        env.from_string(tree).render(_sample())
    except SecurityError as exc:
        raise Invalid(field, f"not allowed in a template: {exc}") from None
    except Exception as exc:  # a template that cannot render with sample data is a 400
        raise Invalid(field, f"template fails to render: {exc}") from None


def _line_of(tree: nodes.Template, name: str) -> int:
    for node in tree.find_all(nodes.Name):
        if node.name == name:
            return int(node.lineno)
    return 1


def _sample() -> dict[str, Any]:
    return {
        "email": "ada@example.org",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "attributes": {},
        "unsubscribe_url": "https://example.org/u/token",
        "preferences_url": "https://example.org/preferences/token",
    }


@dataclass(frozen=True, slots=True)
class CompiledMessage:
    """A message's templates compiled once, rendered for each recipient."""

    subject: Any
    html: Any | None
    text: Any | None

    def render(self, context: dict[str, Any]) -> tuple[str, str | None, str | None]:
        subject = self.subject.render(context).strip()
        html = self.html.render(context) if self.html is not None else None
        text = self.text.render(context) if self.text is not None else None
        if text is not None:
            text = _BLANK_RUNS.sub("\n\n", text)
        return subject, html, text


def compile_message(subject: str, html: str | None, text: str | None) -> CompiledMessage:
    """Compile once per chunk. An HTML-only message gets its text part as a template too.

    Converting each rendered HTML body to text cost a tenth of a worker's time; converting
    the template once gives the same text, since personalisation sits in text nodes. A
    template whose Jinja syntax does not survive the conversion falls back to converting
    each rendered body (the Composer does that when no text is given).
    """
    if text is None and html is not None:
        text = _text_template_of(html)
    return CompiledMessage(
        _text_env.from_string(subject),
        _html_env.from_string(html) if html is not None else None,
        _text_env.from_string(text) if text is not None else None,
    )


def _text_template_of(html: str) -> str | None:
    candidate = html_to_text(html)
    try:
        _text_env.parse(candidate)
    except TemplateSyntaxError:
        return None
    return candidate
