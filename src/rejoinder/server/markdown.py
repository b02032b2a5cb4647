"""Bot replies as safe HTML: CommonMark through markdown-it-py with raw HTML off, links only to
``http``, ``https`` and ``mailto`` (``javascript:`` and ``data:`` stay text) and images shown as
links (a page never loads anything from elsewhere)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

SAFE_SCHEMES = ("http:", "https:", "mailto:")


@lru_cache(maxsize=1)
def _renderer() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")

    def validate(url: str) -> bool:
        lowered = url.strip().lower()
        return lowered.startswith(SAFE_SCHEMES) or ":" not in lowered.split("/", 1)[0]

    md.validateLink = validate

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        tokens[idx].attrSet("target", "_blank")
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


def render_markdown(text: str) -> str:
    """``text`` as HTML that is safe to insert into a page (everything a bot or user wrote is escaped)."""
    return _renderer().render(text)
