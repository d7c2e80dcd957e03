"""Per-token throttling: 429 in the error shape with Retry-After; budgets are per token."""

from __future__ import annotations

import pytest

from apps.core.throttling import PrincipalRateThrottle


@pytest.fixture
def low_rate(monkeypatch):
    rates = {**PrincipalRateThrottle.THROTTLE_RATES, "principal": "3/min"}
    monkeypatch.setattr(PrincipalRateThrottle, "THROTTLE_RATES", rates)


def test_fourth_request_in_a_minute_is_429_with_retry_after(firm_a, api_client_for, low_rate):
    client = api_client_for(firm_a.member("trader"))
    assert [client.get("/api/v1/me/").status_code for _ in range(3)] == [200, 200, 200]
    response = client.get("/api/v1/me/")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_each_token_has_its_own_budget(firm_a, api_client_for, low_rate):
    first = api_client_for(firm_a.member("trader"))
    second = api_client_for(firm_a.member("trader"))
    for _ in range(3):
        first.get("/api/v1/me/")
    assert first.get("/api/v1/me/").status_code == 429
    assert second.get("/api/v1/me/").status_code == 200


def test_throttle_counts_live_in_redis(firm_a, api_client_for, low_rate):
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    cache = caches["default"]
    assert isinstance(cache, RedisCache)

    client = api_client_for(firm_a.member("trader"))
    client.get("/api/v1/me/")
    token_id = client.get("/api/v1/me/").json()["token"]["id"]
    history = cache.get(f"throttle_principal_token:{token_id}")
    assert len(history) == 2
