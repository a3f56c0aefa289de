"""Shared test support: member processes (`procs`)."""
