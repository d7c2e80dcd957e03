"""Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

Playwright's sync API runs an event loop in this thread while it is open, so Django's
async-safety check is relaxed, and async_to_sync cannot run, only while a browser module runs:
the fixture is module-scoped and restores both when the module ends. Never downloads a browser: /usr/bin/chromium is required
(`apt-get install -y chromium`, as .ci/run does).
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `apt-get update && apt-get install -y chromium`.")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _open_page(browser, base_url: str):
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status == 404 else None)
    page.console_errors = errors
    return context, page


@pytest.fixture
def page(browser, live_server):
    context, page = _open_page(browser, live_server.url)
    yield page
    context.close()


@pytest.fixture
def asgi_live_server(transactional_db):
    """The ASGI application (HTTP, static files and /ws/, as `make run` serves it) under uvicorn in
    a thread, for pages that need WebSockets (pytest-django's live_server is WSGI). Yields its URL."""
    import asyncio
    import socket
    import threading
    import time

    import uvicorn
    from asgiref.sync import sync_to_async
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.db import connections

    from octopus.asgi import application

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(ASGIStaticFilesHandler(application), lifespan="off", log_level="warning"))

    async def serve() -> None:
        await server.serve(sockets=[sock])
        # Sync views and database_sync_to_async share one executor thread: close its connections
        # so the test database can be flushed and dropped.
        await sync_to_async(connections.close_all)()

    # asyncio.run cancels what is left (the market hub's Redis reader) and closes the loop in this thread.
    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    for _ in range(200):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def asgi_page(browser, asgi_live_server):
    context, page = _open_page(browser, asgi_live_server)
    yield page
    context.close()
