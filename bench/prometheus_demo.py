"""Run Debian's Prometheus against a running mqadmin (the demo, by default) to look at its metrics.

    MQADMIN_SETTINGS='{"METRICS_TOKEN": "demo-metrics-token-0123456789"}' make demo   # in one terminal
    .venv/bin/python bench/prometheus_demo.py --token demo-metrics-token-0123456789    # in another

Writes a config (scrape every 5 s with the bearer token, the alert rules of docs/prometheus/) into a
temporary folder and runs ``prometheus`` in the foreground until Ctrl-C; open the printed URL and try
``mqadmin_queue_ready`` or ``rate(mqadmin_messages_acked_total[1m])``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Write the config and run prometheus until it exits."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:8000", help="host:port of mqadmin (default the demo's)")
    parser.add_argument("--metrics-path", default="/metrics", help="where queues.urls serves metrics")
    parser.add_argument("--token", required=True, help="MQADMIN['METRICS_TOKEN'] of that mqadmin")
    parser.add_argument("--port", type=int, default=9090, help="Prometheus' own port (default 9090)")
    parser.add_argument("--interval", default="5s", help="scrape interval (default 5s)")
    args = parser.parse_args()

    binary = shutil.which("prometheus")
    if binary is None:
        print("prometheus is not installed: make prometheus (Debian's package)", file=sys.stderr)
        return 1
    folder = Path(tempfile.mkdtemp(prefix="mq-prometheus-"))
    shutil.copy(ROOT / "docs" / "prometheus" / "mqadmin-alerts.yml", folder / "alerts.yml")
    token = folder / "token"
    token.write_text(args.token)
    (folder / "prometheus.yml").write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": args.interval, "evaluation_interval": args.interval},
        "rule_files": [str(folder / "alerts.yml")],
        "scrape_configs": [{
            "job_name": "mqadmin", "metrics_path": args.metrics_path,
            "authorization": {"type": "Bearer", "credentials_file": str(token)},
            "static_configs": [{"targets": [args.target]}],
        }],
    }, indent=2))
    print(f"Prometheus on http://127.0.0.1:{args.port}/ scraping http://{args.target}{args.metrics_path} "
          f"(data in {folder}); Ctrl-C stops it", flush=True)
    proc = subprocess.Popen([binary, f"--config.file={folder / 'prometheus.yml'}",
                             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{args.port}"])
    # SIGTERM as Ctrl-C: stop prometheus and remove the folder either way.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(30)
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
