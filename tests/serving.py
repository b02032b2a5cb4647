"""Starting ``rejoinder serve`` as a real process for tests, and talking to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``rejoinder serve --config <config>`` on a free port, with the database at ``db_url``."""

    def __init__(self, config: Path, db_url: str, *, port: int | None = None, workers: int = 1) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "REJOINDER_DB_URL": db_url, "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
        self.log = config.with_suffix(f".{self.port}.log")
        command = [sys.executable, "-m", "rejoinder.cli", "serve", "--config", str(config), "--port", str(self.port),
                   "--workers", str(workers)]  # fmt: skip
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, *names: str, timeout: float = 90, key: str | None = None) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"the server exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"the server did not become ready: {self.log.read_text()}"
            try:
                headers = {"authorization": f"Bearer {key}"} if key else {}
                models = httpx.get(self.url + "/v1/models", timeout=5, headers=headers).json()["data"]
                failed = {m["id"]: m["error"] for m in models if m.get("error") and (not names or m["id"] in names)}
                assert not failed, f"bots failed to prepare: {failed}\n{self.log.read_text()}"
                if all(m["ready"] for m in models if not names or m["id"] in names):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash or the OOM killer would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Running:
    def __init__(self, config, store) -> None:
        import uvicorn

        from rejoinder.server import create_app

        self.app = create_app(config, store)
        self.port = config.port
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, key: str = "anonymous"):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)

    def wait_ready(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            models = httpx.get(self.url + "/v1/models").json()["data"]
            if next(m for m in models if m["id"] == name)["ready"]:
                return
            time.sleep(0.2)
        raise AssertionError(f"{name} never became ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
