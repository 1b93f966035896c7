"""Live Codex conversations: the agent's ``codex app-server`` and the threads on it.

``supervisor`` keeps one app-server running on ``<stateDir>/codex.sock``; ``rpc`` is the one
JSON-RPC connection to it; ``manager`` carries out thread operations, ``events`` turns what
the server reports into conversation events and approvals, ``items`` maps and redacts
items, ``state`` holds each thread's items with their ``seq``, ``registry`` sends every
change to the relay, ``approvals`` holds the approval rules, ``history`` loads earlier items
and ``origins`` remembers which threads the phone started.
"""
