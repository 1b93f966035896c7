"""Task runners: Codex, predefined actions, predefined log reads."""
