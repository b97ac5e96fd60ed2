"""The `slack-mcp-bot run` process as an operator starts it: real process, real ports, signals.

Both modes talk to the fake Slack through SLACK_API_URL; the process is stopped with SIGTERM
and must exit cleanly on its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_slack import FORM, FakeSlack, post_signed, slash_command, slash_command_body

SECRET = "process-signing-secret"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


def _start(args: list[str], fake: FakeSlack, tmp_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DATA_DIR": str(tmp_path / "data"),
        "SLACK_BOT_TOKEN": "xoxb-process-test",
        "SLACK_API_URL": fake.base_url,
        **extra,
    }
    command = [sys.executable, "-m", "bot", *args]
    return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the bot did not stop within {STOP_TIMEOUT_S} s of SIGTERM:\n{output.decode()[-3000:]}")
    return output.decode()


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the bot exited early:\n{process.communicate()[0].decode()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.1)
    pytest.fail("the bot's /healthz never answered")


@pytest.mark.anyio
async def test_http_mode_serves_slack_and_healthz_then_stops_on_sigterm(
    fake: FakeSlack, tmp_path: Path
) -> None:
    port = _free_port()
    process = _start(["run", "--http", "--port", str(port)], fake, tmp_path, SLACK_SIGNING_SECRET=SECRET)
    try:
        health = _wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        body = slash_command_body("help", user_id="U1", team_id="T1", response_url=fake.response_url("help"))
        status, _, _ = await post_signed(f"http://127.0.0.1:{port}/slack/events", body, FORM, SECRET)
        [reply] = await fake.await_for("/respond/help")
    finally:
        output = _stop(process)

    assert health["ok"] is True
    assert status == 200
    assert "/mcp connect" in reply["body"]["text"]
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert "xoxb-process-test" not in output


@pytest.mark.anyio
async def test_socket_mode_connects_answers_commands_then_stops_on_sigterm(
    fake: FakeSlack, tmp_path: Path
) -> None:
    process = _start(["run"], fake, tmp_path, SLACK_APP_TOKEN="xapp-process-test")
    try:
        payload = slash_command("help", user_id="U1", team_id="T1", response_url=fake.response_url("sock"))
        envelope = await fake.apush_envelope("slash_commands", payload, timeout_s=START_TIMEOUT_S)
        ack = await fake.await_ack(envelope, timeout_s=START_TIMEOUT_S)
        [reply] = await fake.await_for("/respond/sock")
    finally:
        output = _stop(process)

    assert ack["envelope_id"] == envelope
    assert "/mcp connect" in reply["body"]["text"]
    assert process.returncode == 0, output
    assert "xapp-process-test" not in output
