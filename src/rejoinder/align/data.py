"""Curation of the prompt dataset, the first box of the InstructGPT recipe (``rejoinder data curate``).

The steps, in the order they run, each counted in the report:

1. **read** the sources (:func:`rejoinder.datasets.rlhf_sources.read_source`): ``oasst``, ``hh``,
   ``store`` or files; what each left out, and why, is reported.
2. **PII**: every text masked with typed placeholders (:mod:`rejoinder.align.pii`); a record is
   changed, never dropped.
3. **user ids**: a record without one gets ``anonymous:<12 hex digits of the SHA-256 of its
   prompt>``, so it forms a user of its own (records with the same prompt together).
4. **exact duplicates**: records of one format whose normalised texts (NFKC, lower case,
   punctuation dropped, whitespace collapsed) are all equal; the first one read is kept.
5. **near duplicates**: records of one format whose prompts *and* completions both have an
   estimated Jaccard similarity of word 3-grams at or above ``near_dup_threshold`` (default 0.8),
   found with datasketch's MinHash LSH (128 permutations); the first one read is kept. (Comparing
   prompt and completion apart keeps the several answers to one prompt, such as an OpenAssistant
   tree's siblings, which share the prompt but not the answer.)
6. **per-user cap**: at most ``max_per_user`` (default 200) distinct prompts per user id, as in
   InstructGPT; which prompts stay is decided by a hash of the seed and the prompt, so it does not
   depend on the order of the files. Every record of a dropped prompt goes with it.
7. **use cases**: each record's ``use_case`` is the InstructGPT category of the request that
   opened its conversation (the prompt's first user turn; :mod:`rejoinder.align.usecase`); the
   distribution over distinct opening requests is reported beside the paper's.
8. **split** by user id into train/validation/test (default 0.8/0.1/0.1 of the records): users
   are ordered by a hash of the seed and their id and filled into the splits in that order, so no
   user is in two splits and the same seed always gives the same split.

The output folder gets one JSON Lines file per split and format (``train.messages.jsonl``,
``validation.preference.jsonl``, ...), ``report.json`` and ``report.png``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rejoinder.align.pii import KINDS, PiiMasker
from rejoinder.align.usecase import PAPER_DISTRIBUTION, USE_CASES, distribution, tag, tagger_accuracy
from rejoinder.datasets.rlhf import (
    FORMATS,
    Demonstration,
    Format,
    Preference,
    PromptCompletion,
    Record,
    first_user_text,
    map_texts,
    prompt_key,
    write_jsonl,
)
from rejoinder.datasets.rlhf_sources import SourceStats, read_source
from rejoinder.errors import ConfigError

SPLITS = ("train", "validation", "test")
DEFAULT_SOURCES = ("oasst", "hh")


@dataclass
class CurateConfig:
    """What ``rejoinder data curate`` does; every field is a command-line option."""

    sources: Sequence[str] = DEFAULT_SOURCES
    out: Path = Path("curated")
    max_per_user: int = 200
    seed: int = 0
    near_dup_threshold: float = 0.8
    num_perm: int = 128
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    ner: bool = True
    skip_invalid: bool = False
    include_synthetic: bool = False
    db: str | None = None
    format: Format | None = None
    """Force the format of every file source (default: detected from each line's fields)."""

    def check(self) -> None:
        """Every bad field at once, as one ConfigError naming the options."""
        problems = []
        if not self.sources:
            problems.append("--source: give at least one (oasst, hh, store or a file)")
        if isinstance(self.max_per_user, bool) or not isinstance(self.max_per_user, int) or self.max_per_user < 1:
            problems.append(f"--max-per-user {self.max_per_user!r}: expected a whole number, at least 1")
        if not 0.0 < self.near_dup_threshold <= 1.0:
            problems.append(f"--near-dup-threshold {self.near_dup_threshold!r}: expected a number in (0, 1]")
        if not 16 <= self.num_perm <= 1024:
            problems.append(f"num_perm {self.num_perm!r}: expected 16 to 1024")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1) > 1e-6:
            problems.append(
                f"--split {','.join(map(str, self.fractions))}: expected three fractions (train, validation, test), "
                "each 0 or more, adding up to 1"
            )
        if self.format is not None and self.format not in FORMATS:
            problems.append(f"--format {self.format!r}: expected one of {', '.join(FORMATS)}")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class Step:
    """One row of the report: how many records went in and came out, and what was done."""

    name: str
    records_in: int
    records_out: int
    changed: int = 0
    detail: str = ""

    @property
    def removed(self) -> int:
        return self.records_in - self.records_out


@dataclass
class CurationReport:
    config: dict[str, Any]
    sources: list[dict[str, Any]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    pii: dict[str, Any] = field(default_factory=dict)
    dedup: dict[str, Any] = field(default_factory=dict)
    cap: dict[str, Any] = field(default_factory=dict)
    use_cases: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["steps"] = [{**asdict(s), "removed": s.removed} for s in self.steps]
        return out


@dataclass
class Curated:
    """The result of :func:`curate`: the records of each split and the report."""

    splits: dict[str, list[Record]]
    report: CurationReport


# --------------------------------------------------------------------------------------------
# Steps


def mask_pii(records: Sequence[Record], masker: PiiMasker) -> tuple[list[Record], Step]:
    """Every text of every record through ``masker``; counts the records it changed."""
    masker.prepare(text for record in records for text in record.texts())
    out, changed = [], 0
    for record in records:
        masked = map_texts(record, masker.mask)
        if masked != record:
            changed += 1
        out.append(masked)
    counts = ", ".join(f"{masker.counts[k]} {k}" for k in KINDS if masker.counts[k]) or "nothing found"
    return out, Step("PII masked", len(records), len(out), changed, counts)


def fill_user_ids(records: Sequence[Record]) -> tuple[list[Record], Step]:
    """Records without a user id get ``anonymous:<hash of the prompt>`` (see the module docstring)."""
    out, filled = [], 0
    for record in records:
        if record.user_id is None:
            digest = hashlib.sha256(prompt_key(record).encode("utf-8")).hexdigest()[:12]
            record = replace(record, user_id=f"anonymous:{digest}")
            filled += 1
        out.append(record)
    detail = f"{filled} records had no user id" if filled else "every record has one"
    return out, Step("user ids", len(records), len(out), filled, detail)


_WORD = re.compile(r"<[a-z]+>|\w+")


def _norm_words(text: str) -> list[str]:
    """The words of ``text`` after NFKC and lower-casing, punctuation dropped (placeholders kept)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def completion_texts(record: Record) -> list[str]:
    """What a record teaches or compares (the last assistant turn, the completion(s))."""
    if isinstance(record, Demonstration):
        return [record.messages[-1].content] if record.messages else []
    if isinstance(record, PromptCompletion):
        return _plain(record.completion)
    if isinstance(record, Preference):
        return [*_plain(record.chosen), *_plain(record.rejected)]
    return [text for c in record.completions for text in _plain(c)]


def _plain(text: Any) -> list[str]:
    return [text] if isinstance(text, str) else [t.content for t in text]


def _prompt_text(record: Record) -> str:
    if isinstance(record, Demonstration):
        return "\n".join(t.content for t in record.messages[:-1])
    return "\n".join(t.content for t in record.prompt_turns())


def _exact_key(record: Record) -> tuple[str, ...]:
    return (record.format, *(" ".join(_norm_words(t)) for t in record.texts()))


def _snippet(record: Record, n: int = 60) -> str:
    """The start of the prompt and of the completion: ``prompt… → completion…``."""

    def cut(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= n else text[: n - 1] + "…"

    return f"{cut(_prompt_text(record))} → {cut(' | '.join(completion_texts(record)))}"


def remove_exact_duplicates(records: Sequence[Record]) -> tuple[list[Record], Step, list[dict[str, str]]]:
    """Drop records whose normalised texts equal an earlier record's of the same format."""
    seen: dict[tuple[str, ...], Record] = {}
    out, examples = [], []
    for record in records:
        key = _exact_key(record)
        if key in seen:
            if len(examples) < 5:
                examples.append({"kept": seen[key].id or "", "dropped": record.id or "", "text": _snippet(record)})
            continue
        seen[key] = record
        out.append(record)
    return out, Step("exact duplicates", len(records), len(out), 0, "normalised texts equal"), examples


def _shingles(text: str) -> set[bytes]:
    words = _norm_words(text)
    if len(words) < 3:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + 3]).encode("utf-8") for i in range(len(words) - 2)}


def remove_near_duplicates(
    records: Sequence[Record], *, threshold: float = 0.8, num_perm: int = 128
) -> tuple[list[Record], Step, list[dict[str, Any]]]:
    """Drop records whose prompt and completion are both near an earlier record's (MinHash LSH)."""
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:
        raise ConfigError("near-duplicate detection needs datasketch: pip install 'rejoinder[align]'") from None

    def minhash(text: str) -> Any:
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch(list(_shingles(text)))
        return m

    indexes: dict[str, Any] = {}
    signatures: dict[int, tuple[Any, Any, Any]] = {}
    out, examples = [], []
    for i, record in enumerate(records):
        # candidates from LSH (its banding needs a threshold below about 0.95), then checked at ``threshold``
        if record.format not in indexes:
            indexes[record.format] = MinHashLSH(threshold=min(threshold, 0.9), num_perm=num_perm)
        lsh = indexes[record.format]
        prompt = minhash(_prompt_text(record))
        answer = minhash("\n".join(completion_texts(record)))
        whole = minhash(_prompt_text(record) + "\n" + "\n".join(completion_texts(record)))
        duplicate_of = None
        for j in lsh.query(whole):
            p, a, w = signatures[j]
            if prompt.jaccard(p) >= threshold and answer.jaccard(a) >= threshold and whole.jaccard(w) >= threshold:
                duplicate_of = j
                break
        if duplicate_of is not None:
            if len(examples) < 5:
                kept = records[duplicate_of]
                examples.append(
                    {
                        "kept": kept.id or "",
                        "dropped": record.id or "",
                        "kept_text": _snippet(kept),
                        "dropped_text": _snippet(record),
                        "jaccard": round(whole.jaccard(signatures[duplicate_of][2]), 3),
                    }
                )
            continue
        lsh.insert(i, whole)
        signatures[i] = (prompt, answer, whole)
        out.append(record)
    step = Step(
        "near duplicates", len(records), len(out), 0, f"MinHash LSH, prompt and completion Jaccard ≥ {threshold}"
    )
    return out, step, examples


def _hash(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\x00{text}".encode()).hexdigest()


def cap_per_user(
    records: Sequence[Record], max_per_user: int, seed: int = 0
) -> tuple[list[Record], Step, dict[str, Any]]:
    """Keep at most ``max_per_user`` distinct prompts per user id (chosen by a seeded hash)."""
    prompts: dict[str, set[str]] = defaultdict(set)
    for record in records:
        prompts[record.user_id or ""].add(prompt_key(record))
    kept: dict[str, set[str]] = {}
    capped_users = 0
    for user, keys in prompts.items():
        if len(keys) > max_per_user:
            capped_users += 1
            kept[user] = set(sorted(keys, key=lambda k: _hash(seed, k))[:max_per_user])
        else:
            kept[user] = keys
    out = [r for r in records if prompt_key(r) in kept[r.user_id or ""]]
    info = {
        "max_per_user": max_per_user,
        "users": len(prompts),
        "users_capped": capped_users,
        "most_prompts_before": max((len(k) for k in prompts.values()), default=0),
        "most_prompts_after": max((len(k) for k in kept.values()), default=0),
    }
    detail = f"{capped_users} of {len(prompts)} users had more than {max_per_user} prompts"
    return out, Step("per-user cap", len(records), len(out), 0, detail), info


def tag_use_cases(records: Sequence[Record]) -> tuple[list[Record], Step, dict[str, Any]]:
    """Each record's ``use_case`` (of its opening request); the distribution over distinct openings, by source too."""
    out = []
    by_prompt: dict[str, str] = {}
    by_source: dict[str, dict[str, str]] = defaultdict(dict)
    for record in records:
        opening = first_user_text(record)
        use_case = tag(opening)
        out.append(replace(record, use_case=use_case))
        key = " ".join(_norm_words(opening))
        by_prompt[key] = use_case
        by_source[record.source or ""][key] = use_case
    info = {
        "prompts": len(by_prompt),
        "ours": distribution(by_prompt.values()),
        "by_source": {s: {"prompts": len(v), "distribution": distribution(v.values())} for s, v in by_source.items()},
        "paper": dict(PAPER_DISTRIBUTION),
    }
    top = Counter(by_prompt.values()).most_common(3)
    detail = ", ".join(f"{name} {count}" for name, count in top)
    return out, Step("use cases tagged", len(records), len(out), 0, detail), info


def split_by_user(
    records: Sequence[Record], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[Record]]:
    """Train/validation/test by user id: no user in two splits; the same seed, the same split."""
    by_user: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_user[record.user_id or ""].append(record)
    total = len(records)
    bounds = [fractions[0] * total, (fractions[0] + fractions[1]) * total]
    splits: dict[str, list[Record]] = {name: [] for name in SPLITS}
    placed = 0
    for user in sorted(by_user, key=lambda u: _hash(seed, u)):
        if placed < bounds[0]:
            name = "train"
        elif placed < bounds[1]:
            name = "validation"
        else:
            name = "test"
        splits[name].extend(by_user[user])
        placed += len(by_user[user])
    return splits


# --------------------------------------------------------------------------------------------
# The whole curation


def read_sources(config: CurateConfig, report: CurationReport) -> list[Record]:
    records: list[Record] = []
    for spec in config.sources:
        stats = SourceStats(spec)
        records.extend(
            read_source(
                spec,
                stats=stats,
                skip_invalid=config.skip_invalid,
                db=config.db,
                include_synthetic=config.include_synthetic,
                format=config.format,
            )
        )
        report.sources.append(stats.to_json())
    return records


def curate(
    config: CurateConfig,
    *,
    records: Iterable[Record] | None = None,
    masker: PiiMasker | None = None,
    on_step: Callable[[str], None] | None = None,
    write: bool = True,
) -> Curated:
    """Run every step on the configured sources (or on ``records``) and write the output folder."""
    config.check()
    note = on_step or (lambda _name: None)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    report = CurationReport(config=settings)
    note("reading the sources")
    data = list(records) if records is not None else read_sources(config, report)
    left_out = sum(sum(s["left_out"].values()) + s["invalid"] for s in report.sources)
    report.steps.append(Step("read", len(data) + left_out, len(data), 0, f"{left_out} left out by the sources"))

    note("masking personal data")
    masker = masker or PiiMasker(ner=config.ner)
    data, step = mask_pii(data, masker)
    report.steps.append(step)
    report.pii = {"counts": {k: masker.counts[k] for k in KINDS}, "records_changed": step.changed, "ner": config.ner}
    if masker.warning:
        report.warnings.append(masker.warning)

    data, step = fill_user_ids(data)
    report.steps.append(step)

    note("removing duplicates")
    data, step, exact_examples = remove_exact_duplicates(data)
    report.steps.append(step)
    data, step, near_examples = remove_near_duplicates(
        data, threshold=config.near_dup_threshold, num_perm=config.num_perm
    )
    report.steps.append(step)
    report.dedup = {
        "exact_removed": report.steps[-2].removed,
        "near_removed": step.removed,
        "threshold": config.near_dup_threshold,
        "exact_examples": exact_examples,
        "near_examples": near_examples,
    }

    data, step, report.cap = cap_per_user(data, config.max_per_user, config.seed)
    report.steps.append(step)

    note("tagging use cases")
    data, step, report.use_cases = tag_use_cases(data)
    report.use_cases["tagger_accuracy"] = {
        name: {"accuracy": v["accuracy"], "n": v["n"]} if isinstance(v, dict) else v
        for name, v in tagger_accuracy().items()
    }
    report.steps.append(step)

    splits = split_by_user(data, config.fractions, config.seed)
    report.split = {
        name: {
            "records": len(rows),
            "users": len({r.user_id for r in rows}),
            "by_format": dict(Counter(r.format for r in rows)),
        }
        for name, rows in splits.items()
    }
    sizes = ", ".join(f"{name} {len(rows)}" for name, rows in splits.items())
    report.steps.append(Step("split by user", len(data), sum(map(len, splits.values())), 0, sizes))

    if write:
        note("writing the output")
        write_output(splits, report, Path(config.out))
    return Curated(splits, report)


def write_output(splits: dict[str, list[Record]], report: CurationReport, out: Path) -> None:
    """``<split>.<format>.jsonl`` for every non-empty pair, ``report.json`` and ``report.png``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        for kind in FORMATS:
            chosen = [r for r in rows if r.format == kind]
            if chosen:
                path = out / f"{name}.{kind}.jsonl"
                write_jsonl(chosen, path)
                report.files.append(path.name)
    report.files += ["report.json", "report.png"]
    (out / "report.json").write_text(
        json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    plot_report(report, out / "report.png")


# --------------------------------------------------------------------------------------------
# Showing the report


def plot_report(report: CurationReport, path: Path) -> None:
    """A bar chart of the report: records after each step, PII by type, use cases beside the paper's, splits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    ax = axes[0][0]
    steps = report.steps[::-1]
    ys = range(len(steps))
    ax.barh([y + 0.2 for y in ys], [s.removed for s in steps], 0.4, color="#c44e52", label="removed")
    ax.barh([y - 0.2 for y in ys], [s.changed for s in steps], 0.4, color="#8c8c8c", label="changed")
    ax.set_yticks(list(ys), [f"{s.name} ({s.records_out})" for s in steps])
    for y, s in zip(ys, steps, strict=True):
        ax.text(s.removed, y + 0.2, f" {s.removed}", va="center", fontsize=8)
        ax.text(s.changed, y - 0.2, f" {s.changed}", va="center", fontsize=8)
    ax.set_xscale("symlog")
    ax.set_title("records removed and changed by each step (records left in brackets)")
    ax.legend(loc="lower right")
    ax = axes[0][1]
    counts = report.pii.get("counts", {})
    bars = ax.bar(list(counts), list(counts.values()), color="#dd8452")
    ax.bar_label(bars, fontsize=8)
    ax.set_yscale("symlog")
    ax.set_title(f"PII placeholders ({report.pii.get('records_changed', 0)} records changed)")
    ax.tick_params(axis="x", rotation=30)
    ax = axes[1][0]
    ours = report.use_cases.get("ours", {})
    xs = range(len(USE_CASES))
    ax.bar([x - 0.2 for x in xs], [100 * ours.get(c, 0) for c in USE_CASES], 0.4, label="this dataset")
    ax.bar([x + 0.2 for x in xs], [100 * PAPER_DISTRIBUTION[c] for c in USE_CASES], 0.4, label="InstructGPT Table 1")
    ax.set_xticks(list(xs), USE_CASES, rotation=30, ha="right")
    ax.set_ylabel("% of prompts")
    ax.set_title(f"use cases ({report.use_cases.get('prompts', 0)} distinct prompts)")
    ax.legend()
    ax = axes[1][1]
    bottom = [0] * len(SPLITS)
    for kind in FORMATS:
        heights = [report.split.get(s, {}).get("by_format", {}).get(kind, 0) for s in SPLITS]
        if any(heights):
            ax.bar(SPLITS, heights, bottom=bottom, label=kind)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_title("split by user id")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report_tables(report: CurationReport) -> list[Any]:
    """Rich tables of the report: the steps, the sources, the use cases beside the paper's, the splits."""
    from rich.table import Table

    steps = Table(title="Curation")
    for column in ("step", "in", "out", "removed", "changed", "detail"):
        steps.add_column(column, justify="right" if column in ("in", "out", "removed", "changed") else "left")
    for s in report.steps:
        steps.add_row(s.name, str(s.records_in), str(s.records_out), str(s.removed), str(s.changed), s.detail)
    sources = Table(title="Sources")
    for column in ("source", "records", "left out"):
        sources.add_column(column)
    for s in report.sources:
        records = ", ".join(f"{v} {k}" for k, v in s["records"].items()) or "none"
        left = [f"{v} {k}" for k, v in s["left_out"].items()]
        if s["invalid"]:
            left.append(f"{s['invalid']} invalid (skipped)")
        sources.add_row(s["source"], records, "; ".join(left) or "none")
    uses = Table(title=f"Use cases of {report.use_cases.get('prompts', 0)} distinct prompts")
    uses.add_column("use case")
    by_source = report.use_cases.get("by_source", {})
    uses.add_column("all", justify="right")
    for name in by_source:
        uses.add_column(name, justify="right")
    uses.add_column("InstructGPT", justify="right")
    for case in USE_CASES:
        row = [case, f"{100 * report.use_cases.get('ours', {}).get(case, 0):.1f}%"]
        row += [f"{100 * v['distribution'].get(case, 0):.1f}%" for v in by_source.values()]
        uses.add_row(*row, f"{100 * PAPER_DISTRIBUTION[case]:.1f}%")
    accuracy = report.use_cases.get("tagger_accuracy", {})
    if accuracy:
        names = {
            "ours_dev": "our prompts, dev",
            "ours_test": "our prompts, test",
            "oasst_dev": "OpenAssistant, dev",
            "oasst_test": "OpenAssistant, held out",
        }
        parts = [
            f"{label} {accuracy[k]['accuracy']:.1%} of {accuracy[k]['n']}"
            for k, label in names.items()
            if k in accuracy
        ]
        uses.caption = "tagger accuracy: " + "; ".join(parts)
    splits = Table(title="Splits (by user id)")
    for column in ("split", "records", "users", "by format"):
        splits.add_column(column)
    for name, info in report.split.items():
        formats = ", ".join(f"{v} {k}" for k, v in info["by_format"].items())
        splits.add_row(name, str(info["records"]), str(info["users"]), formats)
    duplicates = Table(title="Duplicates dropped (examples)")
    for column in ("kind", "kept", "dropped", "text"):
        duplicates.add_column(column, overflow="fold")
    for example in report.dedup.get("exact_examples", [])[:3]:
        duplicates.add_row("exact", example["kept"], example["dropped"], example["text"])
    for example in report.dedup.get("near_examples", [])[:3]:
        duplicates.add_row(f"near ({example['jaccard']})", example["kept"], example["dropped"], example["dropped_text"])
    tables = [sources, steps]
    if duplicates.row_count:
        tables.append(duplicates)
    return [*tables, uses, splits]
