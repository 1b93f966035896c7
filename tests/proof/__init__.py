"""Reliability and security proofs: fuzzing, faults, crashes, brute force, leaks, abuse."""
