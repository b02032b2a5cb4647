"""The records a training step reads: a curated folder's splits, or sources split here.

A step's ``data`` is either one folder written by ``rejoinder data curate`` (its
``train.<format>.jsonl`` files train, its ``validation.<format>.jsonl`` files evaluate), or a list
of sources (``oasst``, ``hh``, ``store`` or files, as ``rejoinder data`` reads them), split here
by ``held_out`` - by user id for demonstrations (no user on both sides), by prompt for
comparisons (no prompt's completions on both sides).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from rejoinder.datasets.rlhf import Format, Record, prompt_key, read_records
from rejoinder.datasets.rlhf_sources import read_source
from rejoinder.errors import ConfigError


def _hash(seed: int, text: str) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``text``."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_held_out(
    records: Sequence[Record], fraction: float, seed: int, key: Callable[[Record], str]
) -> tuple[list[Record], list[Record]]:
    """(train, held out): records whose ``key`` hashes below ``fraction`` are held out, all of one key together."""
    train, held = [], []
    for record in records:
        (held if _hash(seed, key(record)) < fraction else train).append(record)
    return train, held


def by_user(record: Record) -> str:
    return record.user_id or prompt_key(record)


def read_training_data(
    data: Sequence[str],
    formats: Sequence[Format],
    *,
    held_out: float,
    seed: int,
    key: Callable[[Record], str],
    skip_invalid: bool = False,
    db: str | None = None,
) -> tuple[list[Record], list[Record], str]:
    """(train, evaluation, where they came from) among ``formats``, from a curated folder or sources."""
    if not data:
        raise ConfigError("data: give a curated folder (rejoinder data curate) or sources such as oasst")
    if len(data) == 1 and Path(data[0]).expanduser().is_dir():
        folder = Path(data[0]).expanduser()
        train = [r for f in formats for r in _read_split(folder, "train", f)]
        evaluation = [r for f in formats for r in _read_split(folder, "validation", f)]
        if not train:
            names = ", ".join(f"train.{f}.jsonl" for f in formats)
            raise ConfigError(f"data {folder}: no training records (looked for {names})")
        held = {prompt_key(r) for r in evaluation}
        train = [r for r in train if prompt_key(r) not in held]  # a prompt asked by two users stays on one side
        return train, evaluation, f"{folder} (curated splits)"
    records: list[Record] = []
    for spec in data:
        records.extend(r for r in read_source(spec, skip_invalid=skip_invalid, db=db) if r.format in formats)
    if not records:
        raise ConfigError(f"data {', '.join(data)}: no {' or '.join(formats)} records")
    train, evaluation = split_held_out(records, held_out, seed, key)
    if not train:
        raise ConfigError(f"data {', '.join(data)}: held_out={held_out} leaves nothing to train on")
    return train, evaluation, f"{', '.join(data)} ({held_out:.0%} held out)"


def _read_split(folder: Path, split: str, format: Format) -> list[Record]:
    path = folder / f"{split}.{format}.jsonl"
    return list(read_records(path, format=format)) if path.is_file() else []
