"""The ORM's tables against the migrated database: the two schemas cannot drift apart."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from amrutam.migrations.models import metadata


def _table(diff: Any) -> str | None:
    """The table one of Alembic's diff entries is about."""
    if isinstance(diff, list):  # a group of column modifications: (op, schema, table, ...)
        return str(diff[0][2])
    op, subject = diff[0], diff[1]
    if op in ("add_table", "remove_table"):
        return str(subject.name)
    if op in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        return str(subject.table.name)
    if op in ("add_fk", "remove_fk"):
        return str(subject.parent.name)
    return str(diff[2])  # add_column / remove_column: (op, schema, table, column)


async def test_the_orm_models_match_the_migrated_tables(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    mapped = set(metadata.tables)
    assert mapped == {"users", "refresh_tokens"}
    assert [d for d in diffs if _table(d) in mapped] == []
