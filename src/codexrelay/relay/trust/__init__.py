"""Protected workspaces on the relay (TRUST.md): the membership log it stores and serves,
its first-line checks of signed requests, and sudo mode.

The relay is not trusted here. Everything it checks, the agent checks again against the
log it pinned; the relay's checks only refuse early what an agent would refuse anyway, and
keep its own tables (a cache of the log) in step.
"""
