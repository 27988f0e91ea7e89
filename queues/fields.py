"""Model fields of mqadmin's tables."""

from __future__ import annotations

import functools
import json
from typing import Any

from django.db import models
from django.db.models.functions import Cast


def _as_jsonb(expression: Any) -> Cast:
    return Cast(expression, models.JSONField())


def _needles(value: Any, out: set[str]) -> set[str]:
    """Every key and string of ``value`` as JSON writes it: each must appear in the text of a document
    that contains ``value``, unless that text uses escapes (then it has a backslash)."""
    if isinstance(value, dict):
        for key, item in value.items():
            out.add(json.dumps(str(key), ensure_ascii=False))
            _needles(item, out)
    elif isinstance(value, list):
        for item in value:
            _needles(item, out)
    elif isinstance(value, str):
        out.add(json.dumps(value, ensure_ascii=False))
    return out


@functools.cache
def _on_jsonb(lookup: type) -> type:
    """``lookup`` applied to the column cast to jsonb (``@>``, ``?`` and jsonb equality have no json twin)."""

    class OnJsonb(lookup):  # type: ignore[misc, valid-type]
        def __init__(self, lhs: Any, rhs: Any) -> None:
            super().__init__(_as_jsonb(lhs), rhs)

        def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
            parent = super()
            sql, params = getattr(parent, "as_postgresql", parent.as_sql)(compiler, connection)
            if self.lookup_name != "contains" or not isinstance(self.rhs, (dict, list, str)):
                return sql, list(params)
            # Casting every row to jsonb costs about 4x the jsonb search it replaces; the text test
            # first skips rows that cannot match. Exact: a row whose text has no backslash writes every
            # string literally, so a match must contain each needle; a row with one is always cast.
            needles = sorted(n for n in _needles(self.rhs, set()) if "\\" not in n)
            if not needles:
                return sql, list(params)
            column, column_params = compiler.compile(self.lhs.get_source_expressions()[0])
            text = f"({column})::text"
            present = " AND ".join([f"strpos({text}, %s) > 0"] * len(needles))
            prefilter = f"(strpos({text}, %s) > 0 OR ({present}))"
            prefilter_params = [*column_params, "\\"]
            for needle in needles:
                prefilter_params += [*column_params, needle]
            # CASE, not AND: the planner orders AND-ed conditions by its own cost guess, casting first.
            return f"(CASE WHEN {prefilter} THEN {sql} ELSE false END)", [*prefilter_params, *params]

    OnJsonb.__name__ = OnJsonb.__qualname__ = f"{lookup.__name__}OnJsonb"
    return OnJsonb


class _KeysOnJsonb:
    """A key transform (``body__order_id``) applied to the column cast to jsonb."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory

    def __call__(self, lhs: Any, *args: Any, **kwargs: Any) -> Any:
        return self.factory(_as_jsonb(lhs), *args, **kwargs)


class JSONTextField(models.JSONField):
    """A ``JSONField`` stored as PostgreSQL ``json``, which keeps the text exactly as written (key order,
    duplicate keys, spacing, number spelling) where ``jsonb`` stores a normalised parse.

    Reads return the text's value (or the text itself through ``::text``). Lookups and key transforms
    (``body__contains``, ``body__order__id``) see the value cast to ``jsonb``, so they behave as on a
    ``JSONField``; the cast is paid per row searched (``docs/engine.md`` has the figures).
    """

    def db_type(self, connection: Any) -> str:
        return "json"

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        # Plain text: a jsonb parameter would be normalised on its way into the column.
        if value is None or hasattr(value, "as_sql"):
            return value
        return json.dumps(value, cls=self.encoder, ensure_ascii=False)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is not None and not isinstance(value, str):
            return value  # psycopg parsed the json already (in document order)
        return super().from_db_value(value, expression, connection)

    def get_lookup(self, lookup_name: str) -> Any:
        lookup = super().get_lookup(lookup_name)
        if lookup is None or lookup_name == "isnull":
            return lookup
        return _on_jsonb(lookup)

    def get_transform(self, name: str) -> Any:
        transform = super().get_transform(name)
        return None if transform is None else _KeysOnJsonb(transform)


class BigIntArrayField(models.Field):
    """A PostgreSQL ``bigint[]`` column, read and written as a list of ints (psycopg adapts both ways).

    Not ``django.contrib.postgres``'s ArrayField: that one requires ``django.contrib.postgres`` in the
    project's INSTALLED_APPS, and only the engine's SQL reads this column (``queues_lease``).
    """

    description = "A list of 64-bit integers"

    def db_type(self, connection: Any) -> str:
        return "bigint[]"
