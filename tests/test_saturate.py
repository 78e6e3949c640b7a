import pytest

from exo_egraph import terms as t
from exo_egraph.checks import enumerate_terms
from exo_egraph.lower import lower
from exo_egraph.saturate import Budget
from exo_egraph.targets.cpu import saturate_term
from exo_egraph.rewrites.guards import leaf_independent
from exo_egraph.rewrites.loops import LoopRuleConfig

from tests import kernels as K


def test_matmul16_saturates_and_counts_exactly():
    s = saturate_term(lower(K.matmul16))
    assert s.stats.stop_reason == "saturated"
    assert s.stats.cyclic_classes == 0
    # only reorders: 3! orders of one band, plus the original loop form of each level
    only_reorder = saturate_term(lower(K.matmul16), LoopRuleConfig(divide=False, unroll=False))
    assert only_reorder.stats.schedules > 6
    assert s.stats.schedules > only_reorder.stats.schedules


@pytest.mark.parametrize(
    "kernel, rules",
    [
        ("matmul16", dict(divide=False, unroll=False, fission=False, fuse=False, lift_alloc=False)),
        ("matmul16", dict(reorder=False, unroll=False, fission=False, fuse=False, lift_alloc=False)),
        ("stencil_pair_i32", dict(divide=False, unroll=False)),
        ("inner_alloc", dict(divide=False, unroll=False)),
    ],
)
def test_the_count_equals_a_true_enumeration_of_the_terms(kernel, rules):
    """The dynamic programme's count against every distinct term built one by one."""
    s = saturate_term(lower(getattr(K, kernel)), LoopRuleConfig(**rules))
    assert s.stats.cyclic_classes == 0
    terms = enumerate_terms(s.view)
    assert 1 < len(terms) <= 5_000
    assert s.stats.schedules == len(terms)


def test_node_limit_stops_early():
    s = saturate_term(lower(K.matmul16), budget=Budget(node_limit=100))
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
