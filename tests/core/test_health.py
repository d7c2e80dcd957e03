import pytest

from apps.core.tasks import heartbeat


@pytest.mark.django_db
def test_healthz_is_ok_and_shows_no_heartbeat_before_any_worker_ran(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok"},
        "worker_heartbeat_age_seconds": None,
    }


@pytest.mark.django_db
def test_healthz_shows_the_age_of_the_last_heartbeat(client):
    heartbeat(source="manual")  # what a worker does when beat sends the task
    age = client.get("/healthz").json()["worker_heartbeat_age_seconds"]
    assert age is not None and 0 <= age < 60
