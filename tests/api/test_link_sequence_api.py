"""B4 at the relay: a numbered agent connection is numbered both ways, and any gap, repeat
or reorder from the agent resets it with close code 4412."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from codexrelay.protocol import CLOSE_SEQUENCE
from tests.api.conftest import login
from tests.api.test_pairing_api import _hello, _paired_token, _wid


def _connect(client):
    login(client)
    token = _paired_token(client, _wid(client))
    return client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    )


def test_numbered_hello_gets_numbered_answers(app_client):
    """The welcome is the relay's 1, the token renewal answer its 2."""
    with _connect(app_client) as ws:
        ws.send_json({**_hello(), "linkSeq": 1})
        welcome = ws.receive_json()
        assert (welcome["type"], welcome["linkSeq"]) == ("welcome", 1)
        ws.send_json({"type": "token.renew", "linkSeq": 2})
        renewed = ws.receive_json()
        assert (renewed["type"], renewed["linkSeq"]) == ("token.renewed", 2)


@pytest.mark.parametrize(("second", "kind"), [(3, "gap"), (1, "repeat"), (None, "missing")])
def test_out_of_sequence_resets_the_connection(app_client, second, kind):
    """A skipped, repeated or missing number closes the socket with 4412."""
    with _connect(app_client) as ws:
        ws.send_json({**_hello(), "linkSeq": 1})
        ws.receive_json()
        message = {"type": "token.renew"}
        if second is not None:
            message["linkSeq"] = second
        ws.send_json(message)
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_json()
        assert exc.value.code == CLOSE_SEQUENCE
        assert kind in (exc.value.reason or "")


def test_numbering_starts_at_one(app_client):
    """A hello numbered 2 is refused before anything else happens."""
    with _connect(app_client) as ws:
        ws.send_json({**_hello(), "linkSeq": 2})
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_json()
        assert exc.value.code == CLOSE_SEQUENCE


def test_an_unnumbered_connection_takes_no_numbers(app_client):
    """Numbering is chosen by the hello; it cannot start halfway."""
    with _connect(app_client) as ws:
        ws.send_json(_hello())
        assert "linkSeq" not in ws.receive_json()
        ws.send_json({"type": "token.renew", "linkSeq": 1})
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()
