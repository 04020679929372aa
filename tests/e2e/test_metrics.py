"""Metrics end to end: every process serves its own, a real Prometheus scrapes them all.

One ``surge api``, one ``surge worker`` and one ``surge bounce-server``, each with its metrics
port, and one real Prometheus (Debian's ``/usr/bin/prometheus``) scraping them every second
with the shipped alert rules loaded. The shipped Grafana dashboard and alert rules are checked
against what these processes really export, and every one of their queries is run.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from surge.db.embedded import free_port
from tests.conftest import Process, create_org, run_cli, surge_env
from tests.helpers import Receiver, Recorder, recording_smtp, webhook_receiver

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "surge.json"
PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"
JOBS = ("surge-api", "surge-cluster", "surge-worker", "surge-bounce-server")
#: Names a query may use that no Surge process exports: Prometheus's own per target.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
METRIC = re.compile(r"\b(?:surge|process)_[a-z0-9_]+\b")


def wait_until(check: Any, what: str, timeout: float = 60) -> Any:
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def outbound() -> Iterator[Recorder]:
    with recording_smtp() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def env(database_url: str, outbound: Recorder) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{outbound.port}?tls=none&name=relay",
        SURGE_SECRET_KEY="metrics-test-key",
        SURGE_BOUNCE_DOMAIN="bounces.test",
    )


def serving(args: list[str], env: dict[str, str], url: str) -> Iterator[str]:
    proc = Process(args, env)
    try:
        wait_until(lambda: answers(url) or proc.proc.poll() is not None, f"{args[0]} metrics")
        assert proc.proc.poll() is None, proc.stop()
        yield url.removesuffix("/metrics")
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def worker(env: dict[str, str]) -> Iterator[str]:
    """Base URL of a real worker's metrics port (the ``worker`` fixture has none)."""
    port = free_port()
    args = ["worker", "--queues", "critical,default,bulk", "--metrics-port", str(port)]
    yield from serving(args, env, f"http://127.0.0.1:{port}/metrics")


@pytest.fixture(scope="module")
def bounce_server(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    args = ["bounce-server", "--port", str(free_port()), "--metrics-port", str(port)]
    yield from serving(args, env, f"http://127.0.0.1:{port}/metrics")


@pytest.fixture(scope="module")
def targets(api: str, worker: str, bounce_server: str) -> dict[str, tuple[str, str]]:
    """Each Prometheus job: (host:port, metrics path)."""
    host = api.removeprefix("http://")
    return {
        "surge-api": (host, "/metrics"),
        "surge-cluster": (host, "/metrics/cluster"),
        "surge-worker": (worker.removeprefix("http://"), "/metrics"),
        "surge-bounce-server": (bounce_server.removeprefix("http://"), "/metrics"),
    }


@pytest.fixture(scope="module")
def prometheus(targets: dict[str, tuple[str, str]]) -> Iterator[str]:
    """A real Prometheus scraping every target each second, with alerts.yml loaded."""
    home = Path(tempfile.mkdtemp(prefix="surge-prometheus-"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": [{"targets": [target]}]}
            for job, (target, path) in targets.items()
        ],
    }
    (home / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    with (home / "log").open("w") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url + "/-/ready") or proc.poll() is not None, "prometheus")
        assert proc.poll() is None, (home / "log").read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(home, ignore_errors=True)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(prometheus + "/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def value(prometheus: str, expr: str) -> float:
    """The value of a query that yields one sample (0 when it yields none)."""
    result = query(prometheus, expr)
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def work(api: str, worker: str, database_url: str, outbound: Recorder, hooks: Receiver) -> None:
    """Real work through every process: an event, a donation charged, receipted, announced."""
    org = create_org(database_url, "Metrics Org")
    with httpx.Client(base_url=api) as http:
        staff = {"Authorization": f"Bearer {org['secret_key']}"}
        donor = {"Authorization": f"Bearer {org['publishable_key']}"}
        hook = {"url": hooks.base + "/donations", "event_types": ["donation.succeeded"]}
        assert http.post("/v1/webhook-endpoints", json=hook, headers=staff).status_code == 201
        body = {"name": "Metrics Day", "kind": "fundraising", "goal": 10_000, "currency": "EUR"}
        campaign = http.post("/v1/campaigns", json=body, headers=staff).json()
        gift = {"amount": 1500, "currency": "EUR", "email": "giver@example.org", "token": "tok_ok"}
        given = http.post(
            f"/v1/campaigns/{campaign['id']}/donations",
            json=gift,
            headers={**donor, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert given.status_code == 202, given.text
        event = {"type": "page.viewed", "properties": {"n": 1}}
        sent = http.post("/v1/events", json=event, headers=donor)
        assert sent.status_code == 202, sent.text
    wait_until(lambda: "giver@example.org" in outbound.messages, "the receipt")
    wait_until(lambda: hooks.at("/donations"), "the donation.succeeded webhook")


def exported(base_urls: list[str]) -> set[str]:
    """Every sample name the processes at ``base_urls`` can export, read off ``# TYPE``."""
    names: set[str] = set()
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}
    for url in base_urls:
        for line in httpx.get(url, timeout=10).text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                names.update(name + suffix for suffix in suffixes.get(kind, ("",)))
    return names


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", ())]


def alert_queries() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"],
        cwd=ALERTS.parent,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    example = subprocess.run(
        [PROMTOOL, "check", "config", "prometheus.yml"],
        cwd=ALERTS.parent,
        capture_output=True,
        text=True,
    )
    assert example.returncode == 0, example.stdout + example.stderr


def test_worker_and_bounce_server_serve_metrics_and_health_on_their_own_ports(
    worker: str, bounce_server: str
) -> None:
    for base in (worker, bounce_server):
        metrics = httpx.get(base + "/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert 'surge_db_pool_size{pool="main"}' in metrics.text
        assert "surge_queue_jobs" not in metrics.text  # the cluster's, not a process's
        assert httpx.get(base + "/healthz").json() == {"status": "ok"}
        assert httpx.get(base + "/nope").status_code == 404
        assert httpx.post(base + "/metrics").status_code == 405
    assert 'surge_db_pool_size{pool="engine"}' in httpx.get(worker + "/metrics").text
    host, port = worker.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"nonsense\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400 ")


def test_a_metrics_port_in_use_stops_the_worker_with_a_message(
    database_url: str, worker: str
) -> None:
    taken = worker.rpartition(":")[2]
    proc = run_cli(database_url, "worker", "--metrics-port", taken, check=False)
    assert proc.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_dashboard_and_alerts_use_only_metrics_the_processes_export(
    targets: dict[str, tuple[str, str]],
) -> None:
    names = exported([f"http://{host}{path}" for host, path in targets.values()])
    used = {name for expr in dashboard_queries() + alert_queries() for name in METRIC.findall(expr)}
    assert len(used) > 30  # the expressions were found at all
    assert used - names - PROMETHEUS_OWN == set()


def test_prometheus_scrapes_every_process_and_sees_the_work_done(
    prometheus: str, work: None
) -> None:
    def all_up() -> bool:
        up = {r["metric"]["job"]: r["value"][1] for r in query(prometheus, "up")}
        return up == dict.fromkeys(JOBS, "1")

    wait_until(all_up, "every target up")
    figures = {
        'sum(surge_ingest_events_accepted_total{job="surge-api"})': 1,
        'sum(surge_donations_total{job="surge-api", outcome="accepted"})': 1,
        'sum(surge_donations_total{job="surge-worker", outcome="succeeded"})': 1,
        'sum(surge_donations_amount_minor_total{currency="EUR", outcome="succeeded"})': 1500,
        'sum(surge_smtp_messages_total{sender="relay", outcome="sent"})': 1,
        'sum(surge_smtp_send_duration_seconds_count{sender="relay"})': 1,
        'sum(surge_webhook_deliveries_total{outcome="delivered"})': 1,
        "sum(surge_webhook_delivery_lag_seconds_count)": 1,
        'sum(surge_group_commit_batch_rows_count{writer="events"})': 1,
        'sum(surge_job_runs_total{task="donations.charge", outcome="completed"})': 1,
        'sum(surge_jobs_total{job="surge-cluster", queue="critical", outcome="completed"})': 2,
        'sum(surge_workers{job="surge-cluster"})': 3,  # one worker, three queues
    }
    for expr, least in figures.items():
        wait_until(lambda e=expr, n=least: value(prometheus, e) >= n, expr)
    assert value(prometheus, 'max(surge_smtp_circuit_open{sender="relay"})') == 0


def test_every_dashboard_query_and_alert_rule_runs_in_prometheus(
    prometheus: str, work: None
) -> None:
    for expr in dashboard_queries():
        query(prometheus, expr.replace("$__rate_interval", "1m"))

    def evaluated() -> list[dict[str, Any]] | None:
        groups = httpx.get(prometheus + "/api/v1/rules").json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = all(rule["lastEvaluation"] > "2000" for rule in rules)
        return rules if done and rules else None

    rules = wait_until(evaluated, "every rule evaluated")
    assert len(rules) == len(alert_queries())
    assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []
    # Nothing is wrong with this small cluster.
    assert [r["name"] for r in rules if r["state"] == "firing"] == []
