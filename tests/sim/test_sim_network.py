"""The simulated network loses, duplicates and cuts messages exactly as configured."""

import itertools
import random

from etcdx.sim.network import LinkFaults, Network

SEED = 7


def _net(**faults) -> Network:
    print(f"network seed {SEED}")
    return Network(random.Random(SEED), LinkFaults(**faults))


def test_reliable_link_delivers_one_copy_within_delay_and_jitter():
    net = _net(delay=2, jitter=3)
    for _ in range(200):
        (d,) = net.transmit(1, 2)
        assert 2 <= d <= 5


def test_jitter_lets_later_messages_overtake_earlier_ones():
    net = _net(delay=1, jitter=10)
    delays = [net.transmit(1, 2)[0] for _ in range(50)]
    assert any(later < earlier for earlier, later in itertools.pairwise(delays))


def test_symmetric_partition_drops_both_ways_and_only_across_groups():
    net = _net()
    net.partition([[1, 2], [3, 4, 5]])
    assert net.transmit(1, 3) == [] and net.transmit(3, 1) == []
    assert net.transmit(2, 5) == [] and net.transmit(5, 2) == []
    assert net.transmit(1, 2) and net.transmit(3, 4)


def test_one_way_cut_drops_only_the_cut_direction():
    net = _net()
    net.cut_one_way([1], [2, 3])
    assert net.transmit(1, 2) == [] and net.transmit(1, 3) == []
    assert net.transmit(2, 1) and net.transmit(3, 1)


def test_bridge_node_reaches_both_halves_that_cannot_reach_each_other():
    net = _net()
    net.bridge([1, 2], [4, 5], bridge=3)
    for a in (1, 2):
        for b in (4, 5):
            assert not net.connected(a, b) and not net.connected(b, a)
    for other in (1, 2, 4, 5):
        assert net.connected(3, other) and net.connected(other, 3)


def test_heal_reopens_every_link():
    net = _net()
    net.partition([[1], [2]])
    net.cut_one_way([3], [1])
    net.heal()
    assert not net.is_partitioned()
    assert net.transmit(1, 2) and net.transmit(3, 1)


def test_drop_probability_loses_about_that_share_of_messages():
    net = _net(drop=0.3)
    lost = sum(not net.transmit(1, 2) for _ in range(2000))
    assert 450 < lost < 750


def test_duplicate_probability_delivers_two_copies_about_that_often():
    net = _net(duplicate=0.25)
    doubled = sum(len(net.transmit(1, 2)) == 2 for _ in range(2000))
    assert 380 < doubled < 620


def test_per_link_faults_override_the_default():
    net = _net(delay=1)
    net.set_link(1, 2, LinkFaults(delay=40))
    assert net.transmit(1, 2) == [40]
    assert net.transmit(2, 1) == [1]
