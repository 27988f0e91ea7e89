"""A real Prometheus server (Debian's ``prometheus`` package) scrapes a running daphne with a bearer
token, and a query through Prometheus' HTTP API returns the queues' ``mqadmin_queue_ready``."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import queues
from tests.browser.servers import Daphne, free_port
from tests.conftest import ROOT, stop_process, wait_for

TOKEN = "prometheus-scrape-token-0123456789abcdef"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@pytest.fixture
def prometheus_bin() -> str:
    if not Path(PROMETHEUS).exists():
        pytest.skip("!!! Debian's prometheus is not installed (make prometheus, or apt-get install prometheus): "
                    "the real-scrape test is SKIPPED")
    return PROMETHEUS


class Prometheus:
    """``prometheus`` with a generated config scraping one target every second."""

    def __init__(self, binary: str, target: str, *, token: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mq-prom-"))
        self.port = free_port()
        config = self.dir / "prometheus.yml"
        # JSON is YAML: no YAML library needed to write it.
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{
                "job_name": "mqadmin", "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials": token},
                "static_configs": [{"targets": [target]}],
            }],
        }))
        self.log = self.dir / "prometheus.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def query(self, expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
        except OSError:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text(errors='replace')}") from None
            return []
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def daphne(subprocess_env: dict[str, str]) -> Iterator[Daphne]:
    server = Daphne(subprocess_env, overrides={"METRICS_TOKEN": TOKEN}).start()
    yield server
    server.stop()
    server.discard_log()


@pytest.mark.slow
def test_prometheus_scrapes_queue_ready_with_a_bearer_token(make_queue, daphne, prometheus_bin) -> None:
    for name, count in (("orders", 3), ("mail", 5)):
        make_queue(name)
        queues.send_batch(name, [{"n": n} for n in range(count)])
    prom = Prometheus(prometheus_bin, f"127.0.0.1:{daphne.port}", token=TOKEN)
    try:
        def ready() -> dict[str, float] | None:
            found = {r["metric"].get("queue"): float(r["value"][1]) for r in prom.query("mqadmin_queue_ready")}
            return found if {"orders", "mail"} <= found.keys() else None

        try:
            found = wait_for(ready, timeout=60, interval=0.5)
        except AssertionError:
            log, served = prom.log.read_text(errors="replace")[-3000:], daphne.output()[-3000:]
            raise AssertionError(f"no mqadmin_queue_ready in Prometheus:\n{log}\ndaphne:\n{served}") from None
        assert found["orders"] == 3 and found["mail"] == 5
        up = prom.query('up{job="mqadmin"}')
        assert [float(r["value"][1]) for r in up] == [1.0]
        sent = prom.query('mqadmin_messages_sent_total{queue="mail"}')
        assert [float(r["value"][1]) for r in sent] == [5.0]
        # Every query of the Grafana dashboard is valid PromQL over these series.
        dashboard = json.loads((ROOT / "docs" / "grafana" / "mqadmin.json").read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        assert exprs
        for expr in exprs:
            prom.query(expr.replace("$queue", ".*").replace("$__rate_interval", "1m"))
        # The token is what let Prometheus in: the same endpoint refuses a scrape without it.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{daphne.url}/metrics", timeout=5)
        assert refused.value.code == 401
    finally:
        prom.stop()
