"""The tiny engine object: what differs between SQLite and PostgreSQL, and nothing else.

Storage operations are ``async def op(conn, *args)`` functions written once against
:class:`Conn`. An engine runs a whole operation in one transaction and in one hop off the
Trio loop: SQLite drives the coroutine to completion in a worker thread (the connection's
methods never suspend), PostgreSQL awaits it inside asyncio through the trio-asyncio bridge.
SQL is written in PostgreSQL's dialect (``$1`` placeholders, ``= ANY($n)`` for IN lists,
``ON CONFLICT`` upserts, ``RETURNING``); the SQLite engine rewrites the first two. Where
the two need different SQL for the same set (PostgreSQL's ``LATERAL``), an operation asks
``conn.dialect``.

Each engine counts the statements its operations issue (:attr:`Engine.statements`,
transaction control not included): tests and the bench read it to show how many round
trips a request costs.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import trio

T = TypeVar("T")
P = ParamSpec("P")

#: ``removed_at`` of a state row that is still current.
FOREVER = (1 << 63) - 1


class Row(Protocol):
    """A result row: indexable by position and by column name; a slice is a tuple."""

    def __getitem__(self, key: int | str | slice, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Query:
    """One query: SQL in PostgreSQL's dialect with ``$n`` placeholders, and their values."""

    sql: str
    args: tuple[object, ...]


class Conn(Protocol):
    """A connection inside a transaction, as a storage operation sees it."""

    #: ``sqlite`` or ``postgres``: for the few queries whose SQL differs.
    dialect: str

    async def fetch(self, sql: str, *args: object) -> Sequence[Row]:
        """All rows of a query."""
        ...

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        """The first row of a query, or None."""
        ...

    async def fetchval(self, sql: str, *args: object) -> Any:
        """The first column of the first row, or None."""
        ...

    async def fetch_many(self, queries: Sequence[Query]) -> list[Sequence[Row]]:
        """The rows of each of ``queries``, as ``fetch`` gives them but read by position
        only (see :mod:`.rounds`): on PostgreSQL in one statement, so one round trip; on
        SQLite one after the other."""
        ...

    async def execute(self, sql: str, *args: object) -> None:
        """Run a statement."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run a statement once per parameter row."""
        ...

    async def notify(self, channel: str) -> None:
        """Tell the :class:`ChangeWatch` es of ``channel`` (in any process) about this
        transaction when it commits. The transaction must also change the row their
        ``counter_sql`` reads (SQLite's watches compare that row)."""
        ...


Op = Callable[Concatenate[Conn, P], Coroutine[Any, Any, T]]


@dataclass(frozen=True, slots=True)
class Array:
    """A list parameter used with ``= ANY($n)``."""

    items: Sequence[str | int]


class ChangeWatch(Protocol):
    """Learns, without a query per call, whether a kind of data may have changed.

    Built by :meth:`Engine.change_watch`; :meth:`run` lives in a nursery for as long as
    the watch is used.
    """

    def changed(self) -> bool:
        """True when a change may have committed since the previous call (also whenever
        the watch cannot tell). Not a checkpoint; costs microseconds."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the watch informed until cancelled (reconnecting as needed)."""
        ...


class Engine(Protocol):
    """One database: opened by ``open_engine`` and closed when its context exits."""

    name: str
    #: How many statements operations have issued so far (BEGIN/COMMIT not counted).
    statements: int

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op`` in a read-only snapshot transaction.

        A checkpoint. If cancelled, the operation is either finished (its result thrown
        away) or rolled back; nothing partial is visible.
        """
        ...

    async def read_one(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op``, which issues exactly one read statement, without a transaction.

        Cheaper than :meth:`read` where a round trip costs (PostgreSQL); the statement is
        its own snapshot. A checkpoint; cancellation as for :meth:`read`.
        """
        ...

    async def read_settled(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op``, a read of rows at stream positions the caller knows committed
        before the call (a ``/sync`` bounded by its token), without a snapshot
        transaction where one costs round trips (PostgreSQL): each of its statements is
        then a snapshot of its own, and BEGIN and COMMIT are not sent.

        What such a read sees does not depend on a snapshot: changes committed after the
        caller fixed its positions lie beyond them, and those that do reach back (a
        redaction, a purge, a receipt or account data entry moved to a later position)
        race with a snapshot taken after that just the same. Elsewhere the same as
        :meth:`read`. A checkpoint; cancellation as for :meth:`read`.
        """
        ...

    async def write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op`` in a write transaction; writes are serialised in this process.

        A checkpoint. If cancelled, the transaction has either committed whole or not at all.
        """
        ...

    async def write_one(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """:meth:`write` for an operation that issues exactly one statement where a
        round trip costs (PostgreSQL): run without a transaction of its own, a statement
        being atomic, it saves the BEGIN and COMMIT round trips. Elsewhere the same as
        :meth:`write`. A checkpoint; cancellation as for :meth:`write`."""
        ...

    async def run_script(self, sql: str) -> None:
        """Run a migration script (several statements) in one transaction."""
        ...

    def change_watch(self, channel: str, counter_sql: str) -> ChangeWatch:
        """A watch of the transactions that call ``conn.notify(channel)``, in this
        process or any other; ``counter_sql`` reads one value those transactions change."""
        ...
