"""Per-item answers whose schema pins the ids.

Judges and deciders answer "one entry per sub-question / round / call". Making ``id`` an enum of the real
ids and the list length exact turns "every id exactly once" into a schema property: grammar-constrained
decoding cannot invent or miscopy ids, and duplicates are re-asked like any other validation error.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, create_model

L = TypeVar("L", bound=BaseModel)


def exact_ids(list_model: type[L], field: str, item_model: type[BaseModel], ids: list[str]) -> type[L]:
    """A subclass of ``list_model`` whose ``field`` holds exactly one ``item_model`` per id in ``ids``."""
    id_type: Any = Literal[tuple(ids)]
    item: Any = create_model(item_model.__name__, __base__=item_model, id=(id_type, ...))
    spec: Any = (list[item], Field(min_length=len(ids), max_length=len(ids)))
    return create_model(list_model.__name__, __base__=list_model, **{field: spec})


def unique_ids(items: list[Any]) -> None:
    """Raise ValueError naming the ids that appear more than once (for ``model_validator``s)."""
    ids = [i.id for i in items]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"ids given more than once: {dupes}")
