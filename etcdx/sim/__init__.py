"""Deterministic whole-cluster simulation of the raft core, with faults and safety checks."""
