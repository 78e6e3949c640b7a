from exo_egraph import terms as t
from exo_egraph.lower import lower
from exo_egraph.saturate import Budget, saturate
from rewrites.guards import leaf_independent
from rewrites.loops import LoopRuleConfig

from tests import kernels as K


def test_matmul16_saturates_and_counts_exactly():
    s = saturate(lower(K.matmul16))
    assert s.stats.stop_reason == "saturated"
    assert s.stats.cyclic_classes == 0
    # only reorders: 3! orders of one band, plus the original loop form of each level
    only_reorder = saturate(lower(K.matmul16), LoopRuleConfig(divide=False, unroll=False))
    assert only_reorder.stats.schedules > 6
    assert s.stats.schedules > only_reorder.stats.schedules


def test_reorder_only_count_is_exact():
    cfg = LoopRuleConfig(divide=False, unroll=False, fission=False, fuse=False, lift_alloc=False)
    s = saturate(lower(K.matmul16), cfg)
    # programs: every level is either a plain loop, a fixed one-dim nest, or part of a permutable band.
    # Enumerate by hand: the count must equal the brute-force enumeration below.
    assert s.stats.schedules == _enumerate_count(s.view, s.view.root)


def _enumerate_count(view, c, seen=()):
    total = 0
    for nid in view.classes[c]:
        _, kids = view.nodes[nid]
        prod = 1
        for k in kids:
            prod *= _enumerate_count(view, k, seen + (c,))
        total += prod
    return total


def test_node_limit_stops_early():
    s = saturate(lower(K.matmul16), budget=Budget(node_limit=100))
    assert s.stats.stop_reason == "node-limit"


def test_prefix_sum_loop_is_not_permutable():
    p = lower(K.prefix_sum)
    (red,) = t.leaves(p.body)
    assert not leaf_independent(red, red, "i")


def test_stencil_consumer_blocks_fusion_but_pointwise_allows_it():
    shifted = list(t.leaves(lower(K.shifted_pair).body))
    pointwise = list(t.leaves(lower(K.pointwise_pair).body))
    assert not leaf_independent(shifted[1], shifted[2], "i")
    assert leaf_independent(pointwise[1], pointwise[2], "i")
