"""The `slack-mcp-bot run` process as an operator starts it: real process, real ports, signals.

Both modes talk to the fake Slack through SLACK_API_URL; the process is stopped with SIGTERM
and must exit cleanly on its own, within STOP_FAST_S whatever it is doing (connected, connecting,
waiting to retry). Slack refusing a token stops the bot at start with exit code 2 and a message
naming the variable; Slack not answering is retried, one log line per attempt.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_slack import FORM, FakeSlack, post_signed, slash_command, slash_command_body

SECRET = "process-signing-secret"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
STOP_FAST_S = 2.0
"""SIGTERM to exit, in every state (a loaded test machine included)."""
BOLT_TOKEN_WARNING = "`token` will be unused"
UNAVAILABLE = (503, {}, {"ok": False, "error": "service_unavailable"})


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


def _stop(process: subprocess.Popen[bytes]) -> tuple[str, float]:
    """SIGTERM; the output and how many seconds the process took to exit."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the bot did not stop within {STOP_TIMEOUT_S} s of SIGTERM:\n{output.decode()[-3000:]}")
    return output.decode(), time.monotonic() - started


def _exit(process: subprocess.Popen[bytes]) -> str:
    """The output of a process that stops by itself."""
    try:
        return process.communicate(timeout=START_TIMEOUT_S)[0].decode()
    except subprocess.TimeoutExpired:
        return _stop(process)[0]


def _wait_health(url: str, process: subprocess.Popen[bytes], status: int = 200) -> dict[str, object]:
    """Poll /healthz until it answers ``status``; its JSON."""
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: object = "nothing"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the bot exited early:\n{process.communicate()[0].decode()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                seen = (response.status, json.loads(response.read()))
        except urllib.error.HTTPError as error:
            seen = (error.code, json.loads(error.read()))
        except OSError:
            pass
        if isinstance(seen, tuple) and seen[0] == status:
            return seen[1]
        time.sleep(0.1)
    pytest.fail(f"the bot's /healthz never answered {status} (last: {seen})")


def _assert_stopped_cleanly(
    process: subprocess.Popen[bytes], output: str, stop_s: float, *secrets: str
) -> None:
    """Exit 0 within STOP_FAST_S of SIGTERM, no traceback, no Bolt token warning, no secret."""
    assert process.returncode == 0, output
    assert stop_s < STOP_FAST_S, output
    assert "Traceback" not in output
    assert BOLT_TOKEN_WARNING not in output
    for secret in secrets:
        assert secret not in output


@pytest.mark.anyio
async def test_http_mode_serves_slack_and_healthz_then_stops_on_sigterm(
    fake: FakeSlack, tmp_path: Path
) -> None:
    port = _free_port()
    (tmp_path / ".env").write_text(f"PORT={port}\nSLACK_SIGNING_SECRET={SECRET}\n")  # no --port
    process = _start(["run", "--http"], fake, tmp_path)
    try:
        health = _wait_health(f"http://127.0.0.1:{port}/healthz", process)
        body = slash_command_body("help", user_id="U1", team_id="T1", response_url=fake.response_url("help"))
        status, _, _ = await post_signed(f"http://127.0.0.1:{port}/slack/events", body, FORM, SECRET)
        [reply] = await fake.await_for("/respond/help")
    finally:
        output, stop_s = _stop(process)

    assert health == {"ok": True, "live_sessions": 0, "slack": "ok"}
    assert status == 200
    assert "/mcp connect" in reply["body"]["text"]
    _assert_stopped_cleanly(process, output, stop_s, "xoxb-process-test")
    assert "Slack accepted SLACK_BOT_TOKEN: bot user @mcp-bot (U_BOT) in Fake Team (T_TEST)" in output


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
        output, stop_s = _stop(process)

    assert ack["envelope_id"] == envelope
    assert "/mcp connect" in reply["body"]["text"]
    _assert_stopped_cleanly(process, output, stop_s, "xapp-process-test")


def _wait_metric(url: str, name: str, at_least: float) -> str:
    """Poll /metrics until sample ``name`` is at least ``at_least``; the exposition text."""
    deadline = time.monotonic() + START_TIMEOUT_S
    seen = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                seen = response.read().decode()
        except OSError:
            seen = ""
        for line in seen.splitlines():
            sample, _, value = line.partition(" ")
            if sample == name and float(value) >= at_least:
                return seen
        time.sleep(0.1)
    pytest.fail(f"{url} never had {name} >= {at_least}:\n{seen[-2000:]}")


@pytest.mark.anyio
async def test_socket_mode_logs_json_lines_and_serves_metrics_on_oauth_port_with_log_format_json(
    fake: FakeSlack, tmp_path: Path
) -> None:
    port = _free_port()
    extra = {"SLACK_APP_TOKEN": "xapp-process-test", "LOG_FORMAT": "json", "OAUTH_PORT": str(port)}
    process = _start(["run"], fake, tmp_path, **extra)
    try:
        payload = slash_command("help", user_id="U1", team_id="T1", response_url=fake.response_url("sock"))
        envelope = await fake.apush_envelope("slash_commands", payload, timeout_s=START_TIMEOUT_S)
        await fake.await_ack(envelope, timeout_s=START_TIMEOUT_S)
        metrics = _wait_metric(
            f"http://127.0.0.1:{port}/metrics", "slack_mcp_bot_slack_ack_duration_seconds_count", 1
        )
        health = _wait_health(f"http://127.0.0.1:{port}/healthz", process)
    finally:
        output, stop_s = _stop(process)

    assert health == {"ok": True, "live_sessions": 0, "slack": "ok"}
    assert 'slack_mcp_bot_turns_total{outcome="answered"} 0.0' in metrics
    lines = [json.loads(line) for line in output.splitlines()]  # every line one JSON object
    messages = [line["message"] for line in lines]
    assert "connected to Slack over Socket Mode" in messages
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    _assert_stopped_cleanly(process, output, stop_s, "xoxb-process-test", "xapp-process-test")


@pytest.mark.anyio
async def test_http_mode_serves_while_slack_is_unreachable_and_healthz_says_so_until_it_answers(
    fake: FakeSlack, tmp_path: Path
) -> None:
    fake.overrides["auth.test"] = lambda body: UNAVAILABLE
    port = _free_port()
    process = _start(["run", "--http", "--port", str(port)], fake, tmp_path, SLACK_SIGNING_SECRET=SECRET)
    try:
        unreachable = _wait_health(f"http://127.0.0.1:{port}/healthz", process, 503)
        del fake.overrides["auth.test"]
        reachable = _wait_health(f"http://127.0.0.1:{port}/healthz", process, 200)
    finally:
        output, _ = _stop(process)

    assert unreachable == {"ok": False, "live_sessions": 0, "slack": "unreachable"}
    assert reachable == {"ok": True, "live_sessions": 0, "slack": "ok"}
    assert "Checking SLACK_BOT_TOKEN with Slack failed (service_unavailable)" in output
    assert "Slack accepted SLACK_BOT_TOKEN" in output
    assert process.returncode == 0, output
    assert "Traceback" not in output


@pytest.mark.parametrize("args", [["run"], ["run", "--http", "--port", "0"]], ids=["socket", "http"])
def test_a_bot_token_slack_refuses_stops_the_bot_with_exit_2_and_where_to_get_one(
    fake: FakeSlack, tmp_path: Path, args: list[str]
) -> None:
    fake.overrides["auth.test"] = lambda body: (200, {}, {"ok": False, "error": "invalid_auth"})

    process = _start(args, fake, tmp_path, SLACK_APP_TOKEN="xapp-process-test", SLACK_SIGNING_SECRET=SECRET)
    output = _exit(process)

    assert process.returncode == 2, output
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in output
    assert "OAuth & Permissions → Bot User OAuth Token" in output
    assert "Traceback" not in output
    assert "xoxb-process-test" not in output
    assert not (tmp_path / "data").exists()  # stopped before creating anything


def test_an_app_token_slack_refuses_stops_socket_mode_with_exit_2_and_where_to_get_one(
    fake: FakeSlack, tmp_path: Path
) -> None:
    fake.overrides["apps.connections.open"] = lambda body: (200, {}, {"ok": False, "error": "invalid_auth"})

    process = _start(["run"], fake, tmp_path, SLACK_APP_TOKEN="xapp-process-test")
    output = _exit(process)

    assert process.returncode == 2, output
    assert "Slack refused SLACK_APP_TOKEN (invalid_auth)" in output
    assert "Basic Information → App-Level Tokens" in output
    assert "connections:write" in output
    assert "Traceback" not in output
    assert "xapp-process-test" not in output


def test_a_configuration_the_core_refuses_stops_the_bot_with_exit_2_and_the_reason_in_one_line(
    fake: FakeSlack, tmp_path: Path
) -> None:
    process = _start(
        ["run", "--http", "--port", str(_free_port())],
        fake,
        tmp_path,
        SLACK_SIGNING_SECRET=SECRET,
        CREDENTIAL_KEYS="k1:not-base64!",
    )
    output = _exit(process)

    assert process.returncode == 2, output
    assert "Cannot start in HTTP mode" in output
    assert "CREDENTIAL_KEYS: key 'k1' is not valid base64" in output
    assert "Traceback" not in output


def test_socket_mode_retries_an_unreachable_slack_with_one_line_each_and_stops_at_once(
    fake: FakeSlack, tmp_path: Path
) -> None:
    fake.overrides["apps.connections.open"] = lambda body: UNAVAILABLE
    process = _start(["run"], fake, tmp_path, SLACK_APP_TOKEN="xapp-process-test")
    try:
        fake.wait_for("apps.connections.open", 2, timeout_s=START_TIMEOUT_S)  # retried after 1 s
    finally:
        output, stop_s = _stop(process)

    mentions = [line for line in output.splitlines() if "service_unavailable" in line]
    assert mentions[0].endswith(
        "Connecting to Slack over Socket Mode failed (service_unavailable); retrying in 1 s"
    )
    assert all("Socket Mode failed (service_unavailable); retrying in" in line for line in mentions)
    assert process.returncode == 0, output
    assert stop_s < STOP_FAST_S, output
    assert "Traceback" not in output


def test_socket_mode_stops_at_once_while_slack_has_not_answered_yet(fake: FakeSlack, tmp_path: Path) -> None:
    answer = threading.Event()

    def hang(body: dict[str, object]) -> tuple[int, dict[str, str], dict[str, object]]:
        answer.wait(STOP_TIMEOUT_S)  # holds the fake's loop: Slack "connecting" forever
        return UNAVAILABLE

    fake.overrides["apps.connections.open"] = hang
    process = _start(["run"], fake, tmp_path, SLACK_APP_TOKEN="xapp-process-test")
    try:
        fake.wait_for("apps.connections.open", timeout_s=START_TIMEOUT_S)
        output, stop_s = _stop(process)
    finally:
        answer.set()

    assert process.returncode == 0, output
    assert stop_s < STOP_FAST_S, output
    assert "Traceback" not in output
