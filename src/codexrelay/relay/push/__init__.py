"""Content-free Web Push: subscriptions, the VAPID key, the sending queue, and ``notify``,
which other features call (see docs/PUSH.md)."""
