"""Turn pydantic validation errors into one short line that names the key and what is accepted."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of ``loc`` (to list its accepted keys)."""
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return model if isinstance(part, int) else None
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def describe_validation_error(exc: ValidationError, *, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """One line per problem (at most three), e.g. ``optim.lr: Input should be greater than 0 (got -1)``."""
    lines = []
    for error in exc.errors()[:3]:
        loc = tuple(error["loc"])
        key = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc))
        if error["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            accepted = ", ".join(owner.model_fields) if owner is not None else None
            lines.append(f"unknown key '{key}'" + (f" (accepted: {accepted})" if accepted else ""))
            continue
        got = error.get("input")
        shown = repr(got) if not isinstance(got, dict) else "a mapping"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        message = str(error["msg"]).removeprefix("Value error, ")  # pydantic's prefix for a validator's ValueError
        lines.append(f"{key}: {message} (got {shown})")
    more = len(exc.errors()) - len(lines)
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)
