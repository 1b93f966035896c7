"""A first real-server check."""


def test_relay_process_serves_healthz(relay):
    """The relay subprocess binds its port and answers /healthz."""
    with relay.client() as client:
        assert client.get("/healthz").json() == {"ok": True}
