"""A plain-text version of an HTML body, for the text/plain part of a message.

Good enough for mail clients that show text, and for spam filters that compare the two
parts: block elements become line breaks, list items get bullets, links show their target,
scripts and styles disappear. The stdlib parser is enough; no rendering is attempted.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "div", "dl", "dt", "dd", "fieldset"),
        *("figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr"),
        *("li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul"),
    }
)
_SKIP = frozenset({"script", "style", "head", "title", "template"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "pre"})


def _break(tag: str) -> str:
    # Paragraph-like blocks are set apart by a blank line, other blocks by a line break.
    return "\n\n" if tag in _PARAGRAPHS else "\n"


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.links: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag in _BLOCKS:
            self.out.append(_break(tag))
            if tag == "li":
                self.out.append("- ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.out)))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(alt)
        elif tag == "td":
            self.out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS and tag != "li":
            self.out.append(_break(tag))
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(self.out[start:]).strip()
            # Show where a link goes unless its text already says so.
            if href.startswith(("http:", "https:")) and href != label:
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(_SPACES.sub(" ", data.replace("\n", " ")))


def html_to_text(html: str) -> str:
    """A readable plain-text version of ``html``: block breaks, list bullets, link targets."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).split("\n"))
    text = "\n".join(lines)
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"
