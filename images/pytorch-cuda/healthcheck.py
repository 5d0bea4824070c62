"""Container health: JupyterLab answers /api/status with the container's token, or a model
service answers /health. Exit 0 healthy, 1 not."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

port = os.environ.get("HEALTH_PORT") or os.environ.get("JUPYTER_PORT", "8888")
if os.environ.get("HEALTH_PATH"):
    url = f"http://127.0.0.1:{port}{os.environ['HEALTH_PATH']}"
else:
    url = f"http://127.0.0.1:{port}/api/status?token={os.environ.get('JUPYTER_TOKEN', '')}"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        body = json.loads(response.read() or b"{}")
except Exception as exc:  # any failure is "unhealthy", with the reason in docker inspect
    print(f"unhealthy: {url.split('?')[0]}: {exc}")
    sys.exit(1)
status = body.get("status", "ok") if isinstance(body, dict) else "ok"
print(f"{status}: {url.split('?')[0]}")
sys.exit(0 if status in ("ok", "degraded") or "started" in body else 1)
