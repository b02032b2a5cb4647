"""``rejoinder serve``: every bot behind an OpenAI-compatible API (``/v1``) and a conversations API
(``/api``), on FastAPI, for many users at once. See :mod:`rejoinder.server.app`."""

from rejoinder.server.app import create_app
from rejoinder.server.config import ServedBot, ServerConfig, load_server_config

__all__ = ["ServedBot", "ServerConfig", "create_app", "load_server_config"]
