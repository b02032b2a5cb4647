"""The optional toxicity model: ``alt-profanity-check``, imported the first time a moderator wants it.

A calibrated linear SVM over TF-IDF (English only). Without the package :func:`load_model`
returns None and the word lists and policy rules still screen on their own.
"""

from __future__ import annotations

from typing import Any

_cache: dict[str, Any] = {}


def load_model() -> Any:
    """``profanity_check.predict_prob``, imported on first use; None when it is not installed."""
    if "predict_prob" not in _cache:
        try:
            from profanity_check import predict_prob
        except ImportError:
            predict_prob = None
        _cache["predict_prob"] = predict_prob
    return _cache["predict_prob"]
