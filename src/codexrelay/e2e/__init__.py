"""End-to-end trust: exact-bytes statements, the membership log, sealed envelopes (TRUST.md).

Pure code shared by the agent, the relay's first-line filters and offline verifiers. Nothing
here imports the relay or the agent, touches the network or the disk, or reads the clock:
callers pass ``now`` and the random source.
"""
