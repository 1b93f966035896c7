"""A first in-process check that the app answers."""


def test_healthz_ok(app_client):
    """GET /healthz answers {"ok": true} without auth."""
    res = app_client.get("/healthz")
    assert res.status_code == 200
    assert res.json() == {"ok": True}
