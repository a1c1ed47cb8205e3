"""Where ``asiou-bridge demo-db`` may write: fail closed on anyone else's data.

The demo school's tables have the names a real ASIOU journal's have (``bridge.demo.schema``),
and writing it drops and re-creates them. So the demo writes only into a database that is empty
or that it wrote before, which it knows by a table of its own, ``MARKER`` (written first, so
a generation that broke off may be run again). Any
other table or view there, or demo-named tables without the marker, is someone's data: the
demo refuses unless told ``--replace``, and even then drops only the tables of its own schema.
"""

from __future__ import annotations

import sqlalchemy as sa

from bridge.demo import schema

MARKER = sa.Table(
    "bridge_demo_school",
    sa.MetaData(),
    sa.Column("written_by", sa.String(40), nullable=False),
)
"""The table that says: this database holds a demo school, written by ``asiou-bridge``."""


def foreign_tables(engine: sa.Engine) -> list[str]:
    """The tables and views of ``engine``'s database the demo may not replace: none in an empty
    database; in one the demo wrote (``MARKER`` is there) those outside the demo's schema;
    in any other, all of them."""
    inspector = sa.inspect(engine)
    found = {*inspector.get_table_names(), *inspector.get_view_names()}
    by_case = {name.lower(): name for name in found}
    if MARKER.name not in by_case:
        return sorted(found)
    ours = {t.name for t in schema.metadata.sorted_tables} | {MARKER.name}
    return sorted(name for lower, name in by_case.items() if lower not in ours)


def mark_as_demo(engine: sa.Engine) -> None:
    """Record in ``engine``'s database that it holds a demo school (before writing one)."""
    with engine.begin() as conn:
        MARKER.create(conn, checkfirst=True)
        conn.execute(MARKER.delete())
        conn.execute(MARKER.insert().values(written_by="asiou-bridge demo-db"))
