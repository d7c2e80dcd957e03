"""No 500 while PostgreSQL or Redis is briefly down (reliability target 45): a 503 with a stable
code and Retry-After, and recovery without a restart once the service is back."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from tests.ops.support import free_port


def _closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


def _assert_503(response, code: str):
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "error": {"code": code, "message": response.json()["error"]["message"], "fields": {}}
    }
    assert "unavailable" in response.json()["error"]["message"]


@pytest.fixture
def token_client(firm_a, make_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(firm_a.member('trader'), ('read',))}")
    return client


def test_redis_down_gives_503_cache_unavailable_then_recovers(token_client, settings):
    assert token_client.get("/api/v1/me/").status_code == 200
    down = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{_closed_port()}/1"}}
    with override_settings(CACHES=down):
        _assert_503(token_client.get("/api/v1/me/"), "CACHE_UNAVAILABLE")  # the throttle reads the cache
    assert token_client.get("/api/v1/me/").status_code == 200


@pytest.fixture
def database_down():
    """Point the connection at a closed port for the duration; restore it afterwards."""
    saved = connection.settings_dict["PORT"]

    def down():
        connection.close()
        connection.settings_dict["PORT"] = str(_closed_port())

    def up():
        connection.close()
        connection.settings_dict["PORT"] = saved

    yield down, up
    up()


def test_postgres_down_gives_503_on_the_api_then_recovers(transactional_db, token_client, database_down):
    down, up = database_down
    assert token_client.get("/api/v1/me/").status_code == 200
    down()
    _assert_503(token_client.get("/api/v1/me/"), "DATABASE_UNAVAILABLE")
    _assert_503(token_client.get("/api/v1/me/"), "DATABASE_UNAVAILABLE")
    up()
    assert token_client.get("/api/v1/me/").status_code == 200


def test_postgres_down_gives_503_on_a_logged_in_page_then_recovers(transactional_db, firm_a, verified_client_for,
                                                                    database_down):
    down, up = database_down
    client = verified_client_for(firm_a.member("owner"))
    client.raise_request_exception = False  # see the response a browser would get
    assert client.get("/").status_code == 200
    down()
    _assert_503(client.get("/"), "DATABASE_UNAVAILABLE")  # the session itself lives in PostgreSQL
    up()
    assert client.get("/").status_code == 200


def test_healthz_reports_the_outage_as_503(transactional_db, client, database_down):
    down, up = database_down
    assert client.get("/healthz").json()["status"] == "ok"
    down()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: OperationalError"
    up()
    assert client.get("/healthz").status_code == 200


# --- a real server through a real outage --------------------------------------------------------


def test_real_server_answers_503_while_postgres_is_gone_and_recovers_without_restart(transactional_db, firm_a,
                                                                                     make_token, tmp_path):
    """gunicorn (the production web process) reaches PostgreSQL through a proxy we cut and restore."""
    import json
    import subprocess
    import time
    import urllib.error
    import urllib.request

    from tests.celery_support import worker_env
    from tests.ops.support import PYTHON, ROOT, TcpProxy

    token = make_token(firm_a.member("trader"), ("read",))
    db = connection.settings_dict
    proxy = TcpProxy(int(db["PORT"])).start()
    env = worker_env()
    env["DATABASE_URL"] = f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "octopus.wsgi", "-w", "1", "-b", f"127.0.0.1:{port}", "--timeout", "30"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )

    def get() -> tuple[int, dict, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/me/",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
                return resp.status, dict(resp.headers), json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), json.loads(exc.read())
        except OSError:
            return 0, {}, {}

    try:
        deadline = time.monotonic() + 30
        while (status := get()[0]) != 200:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.2)
        proxy.stop()  # PostgreSQL "restarts": every connection is cut, nothing listens
        for _ in range(3):
            status, headers, body = get()
            assert status == 503, body
            assert headers["Retry-After"] == "5"
            assert body["error"]["code"] == "DATABASE_UNAVAILABLE"
        proxy.start()  # back: the same worker serves again, no restart
        deadline = time.monotonic() + 30
        while (status := get()[0]) != 200:
            assert time.monotonic() < deadline, f"not recovered within 30 s (last status {status})"
            time.sleep(0.5)
        assert server.poll() is None
        assert "Booting worker" in (tmp_path / "gunicorn.log").read_text()
        assert (tmp_path / "gunicorn.log").read_text().count("Booting worker") == 1  # never restarted
    finally:
        server.terminate()
        server.wait(15)
        log.close()
        proxy.stop()
