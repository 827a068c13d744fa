"""Who is listening: the customers with a WebSocket open on some API process (services/live_updates.py).

The change triggers (migration 0032) announce a change only for a customer listed here, because PostgreSQL
serialises the commits of every transaction that NOTIFYs: a customer with no socket open must not pay for
it. UNLOGGED (no WAL): the rows are re-registered by each API process whenever its listener (re)connects,
which it must after a server crash anyway; a row of a process that died unannounced only costs its customer
NOTIFYs until the next listener connects and deletes rows whose `listener_pid` is no longer a backend.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Column, Integer, Uuid
from sqlmodel import Field, SQLModel


class LiveListener(SQLModel, table=True):
    __tablename__ = "live_listeners"
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    user_id: uuid.UUID = Field(sa_column=Column(Uuid(), primary_key=True))
    listener_pid: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
