"""The Django app, with the real Django: settings, middleware answers, lockkit_status, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from proc_helpers import storage_writes

pytestmark = pytest.mark.timeout(120)

PROJECT = """
import json, sys, threading
import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["testserver"],
    SECRET_KEY="test",
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["lockkit.contrib.django"],
    MIDDLEWARE=["lockkit.contrib.django.middleware.LockkitMiddleware"],
    LOCKKIT={"DATA_DIR": sys.argv[1], "TIMEOUT": 0, "RETRY_AFTER": 2},
    LOGGING={
        "version": 1,
        "handlers": {"err": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        "loggers": {"lockkit": {"handlers": ["err"], "level": "WARNING", "propagate": False}},
    },
)
django.setup()

from django.http import JsonResponse
from django.urls import include, path
from django.test import Client
from django.core.management import call_command
from io import StringIO
from lockkit.contrib.django import file_lock, repository

def deposit(request, key):
    return JsonResponse(repository("accounts").modify(key, lambda a: {"balance": (a or {"balance": 0})["balance"] + 1}))

urlpatterns = [path("deposit/<str:key>", deposit), path("", include("lockkit.contrib.django.urls"))]

out = {}
client = Client(raise_request_exception=False)
out["ok"] = client.get("/deposit/alice").json()
lock = repository("accounts").document("alice").lock
held, release = threading.Event(), threading.Event()
def hold():
    with lock:
        held.set()
        release.wait(30)
t = threading.Thread(target=hold)
t.start()
held.wait(30)
busy = client.get("/deposit/alice")
release.set()
t.join()
out["busy"] = [busy.status_code, busy["Retry-After"], busy.json()["error"], "alice" in busy.content.decode()]
bad = client.get("/deposit/.x")
out["bad"] = [bad.status_code, bad.json()["error"]]
page = client.get("/metrics/")
out["metrics"] = [page.status_code, page["Content-Type"], page.content.decode()]
with file_lock("nightly"):
    status = StringIO()
    call_command("lockkit_status", "--json", stdout=status)
out["status"] = json.loads(status.getvalue())
print(json.dumps(out))
"""


def test_django_app_settings_middleware_status_and_metrics(tmp_path: Path) -> None:
    script = tmp_path / "project.py"
    script.write_text(textwrap.dedent(PROJECT))
    r = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data")], capture_output=True, text=True, timeout=90
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] == {"balance": 1}
    assert out["busy"] == [503, "2", "busy", False]  # Retry-After from the settings; no key in the body
    assert out["bad"] == [400, "invalid_key"]
    status, content_type, text = out["metrics"]
    assert status == 200 and content_type.startswith("text/plain")
    assert storage_writes(text) == [1.0]
    held = [s for s in out["status"] if s["path"].endswith("nightly.lock")]
    assert held and held[0]["state"] == "held"


def test_django_app_refuses_bad_settings_at_start_up(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=["lockkit.contrib.django"], LOCKKIT={"DATA_DIR": "x", "STRATEGY": "nfs"})
        django.setup()
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "ImproperlyConfigured" in r.stderr and "STRATEGY" in r.stderr
