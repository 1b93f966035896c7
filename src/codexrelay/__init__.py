"""codexrelay: drive the Codex CLI on a development server from a phone."""

__version__ = "0.1.0"
