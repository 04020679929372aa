"""``surge up`` on the embedded database, as a user runs it: start, use, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from surge.db.embedded import free_port
from tests.conftest import SURGE


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: pytest keeps its root 0700, and a later pytest run
    # resets it so, which would lock the embedded server's own user out of its data.
    base = Path(tempfile.mkdtemp(prefix="surge-up-test-"))
    yield base / "surge-data"
    shutil.rmtree(base, ignore_errors=True)


def test_up_serves_everything_and_ctrl_c_leaves_no_process(data_dir: Path) -> None:
    api_port, smtp_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGE_")}
    env.update(
        SURGE_DATA_DIR=str(data_dir),
        SURGE_API_PORT=str(api_port),
        SURGE_SMTP_SINK_PORT=str(smtp_port),
        SURGE_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [SURGE, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 90
        output = ""
        assert proc.stdout is not None
        while "Press Ctrl-C to stop." not in output:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"surge up exited early:\n{output}"
            output += line
            assert time.monotonic() < deadline, f"surge up did not come up:\n{output}"
        assert base in output
        assert httpx.get(base + "/readyz").json() == {"status": "ready"}
        family = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        for role in ("api", "smtp-sink", "critical,default", "bulk"):
            assert role in names, f"{role} not running: {names}"
        # pg_ctl daemonises PostgreSQL, so it is not a child: find it by its pid file.
        postmaster = psutil.Process(
            int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
        )
        family.append(postmaster)
        # Each worker serves its metrics on its own port, the two after the API's.
        for port in (api_port + 1, api_port + 2):
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert 'surge_db_pool_size{pool="engine"}' in metrics
        assert "surge_queue_jobs" in httpx.get(base + "/metrics/cluster").text
        # The sink is a real SMTP server.
        import smtplib

        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as smtp:
            smtp.sendmail("a@example.org", ["b@example.org"], b"Message-ID: <1@x>\r\n\r\nhi")
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "Stopped." in rest
    gone, alive = psutil.wait_procs(family, timeout=5)
    assert not alive, f"left behind: {[p.cmdline() for p in alive]}"
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert "<1@x>" in (data_dir / "mail" / "message-ids.log").read_text()


def test_api_alone_on_the_embedded_database_stops_it_on_sigterm(data_dir: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGE_")}
    env.update(SURGE_DATA_DIR=str(data_dir), SURGE_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([SURGE, "api", "--port", str(port)], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert not (data_dir / "pg" / "postmaster.pid").exists(), "the server outlived surge api"
    with contextlib.suppress(psutil.NoSuchProcess):  # gone, or a zombie awaiting its reaper
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
