"""The simulated clock's units.

Time is an integer; a node ticks its raft core every ``TICK`` units (give or
take one, so clocks drift), and elections time out after ``ELECTION_TICK`` to
twice that many ticks.
"""

TICK = 10
ELECTION_TICK = 10
