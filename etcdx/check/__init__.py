"""History checkers: linearizability of client histories and etcd's watch guarantees.

Pure code with no I/O, shared by the deterministic raft simulator and the
fault-injection harness that drives real member processes.
"""
