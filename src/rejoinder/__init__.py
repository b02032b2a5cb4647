"""Rejoinder: build, align and serve chat bots of every generation."""

from rejoinder.dialogue import Bot, Dialogue, Message, Reply, StreamingBot
from rejoinder.errors import RejoinderError

__all__ = ["Bot", "Dialogue", "Message", "RejoinderError", "Reply", "StreamingBot"]
__version__ = "0.1.0"
