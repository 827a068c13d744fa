"""Workflow and activity I/O of the screening sagas (pydantic; new fields get defaults: histories replay)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from pydantic import Field as PField


class RefreshInput(BaseModel):
    """One list refresh. `data_dir` empty: download from the configured URLs (or, with none configured,
    read the configured `sanctions_data_dir`)."""

    data_dir: str = ""


class DownloadInput(BaseModel):
    key: str  # the run's name for its download directory (from the workflow's clock: deterministic)


class DownloadResult(BaseModel):
    data_dir: str
    files: list[str] = PField(default_factory=list)


class RefreshListInput(BaseModel):
    source: str  # models.screening.ListSource value
    data_dir: str


class RefreshListResult(BaseModel):
    source: str
    found: bool = True  # False: the run has no file for this list
    added: int = 0
    changed: int = 0
    removed: int = 0
    screened: int = 0
    outcome_changes: int = 0
    refused: str = ""  # why the store refused this list's files (a truncated download): nothing loaded


class RefreshResult(BaseModel):
    data_dir: str
    lists: list[RefreshListResult] = PField(default_factory=list)


class PayerScreeningInput(BaseModel):
    """A credited bank deposit's payer name, screened after the credit (never before it)."""

    deposit_id: uuid.UUID
    user_id: uuid.UUID
    payer_name: str


class PayerScreeningResult(BaseModel):
    result: str  # CLEAR / HIT
    score: int = 0
    recorded: bool = False
