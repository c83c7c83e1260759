"""MkDocs hook: render the Sphinx roles of dssl's docstrings (``:class:`~dssl.results.EvaluationResult```) as code.

The docstrings are written for readers of the source and of ``help()``; mkdocstrings renders them as Markdown, where
a role would show as ``:class:EvaluationResult``. A ``~`` keeps the last dotted part only, as Sphinx does.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):<code>(~?)([^<]+)</code>")


def _code(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_code, html)
