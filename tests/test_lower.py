from exo_egraph import terms as t
from exo_egraph.lower import UnsupportedConstruct, lower

from tests import kernels as K


def test_matmul_lowers_to_three_loops_and_a_reduce():
    p = lower(K.matmul16)
    (i,) = p.body
    assert isinstance(i, t.Loop) and (i.var, i.hi.const) == ("i", 16)
    (j,) = i.body
    (k,) = j.body
    (red,) = k.body
    assert red == t.Reduce(
        "C",
        (t.Aff.var("i"), t.Aff.var("j")),
        t.BinOp("*", t.Read("A", (t.Aff.var("i"), t.Aff.var("k"))), t.Read("B", (t.Aff.var("k"), t.Aff.var("j")))),
    )
    assert [(a.name, a.typ, a.mem) for a in p.args] == [("A", "f32", "DRAM"), ("B", "f32", "DRAM"), ("C", "f32", "DRAM")]


def test_affine_index_is_canonical():
    p = lower(K.shifted_pair)
    write = next(s for s in t.leaves(p.body) if isinstance(s, t.Assign) and s.buf == "tmp")
    assert write.idx[0] == t.Aff.of(1, i=1)


def test_alloc_keeps_type_and_memory():
    p = lower(K.inner_alloc)
    alloc = next(s for s in t.leaves(p.body) if isinstance(s, t.Alloc))
    assert (alloc.name, alloc.typ, alloc.mem, alloc.shape) == ("t", "i32", "DRAM", (t.Aff((), 8),))


def test_non_affine_index_is_named_with_its_line():
    try:
        lower(K.nonaffine)
    except UnsupportedConstruct as e:
        assert "index operator '/'" in str(e)
        assert e.line is not None and e.line > 0
    else:
        raise AssertionError("lowering a non-affine index must fail")


def test_materialize_of_a_lowered_term_is_itself():
    for k in (K.matmul16, K.pointwise_pair, K.inner_alloc):
        p = lower(k)
        assert t.materialize(p) == p


def test_if_with_else_and_size_argument():
    p = lower(K.clamp_rows)
    assert [a.typ for a in p.args] == ["f32", "size"]
    (cond,) = p.preds
    assert cond == t.BinOp("<=", t.IdxExpr(t.Aff.var("n")), t.IdxExpr(t.Aff((), 8)))
    (branch,) = p.body[0].body[0].body
    assert isinstance(branch, t.If)
    assert branch.cond == t.BinOp("<", t.IdxExpr(t.Aff.var("j")), t.IdxExpr(t.Aff.var("n")))
    assert isinstance(branch.body[0].rhs, t.USub) and branch.orelse[0].rhs == t.Const("0.0", "R")


def test_window_statement_call_and_pass():
    p = lower(K.calls_and_windows)
    window, call = p.body[0].body
    assert window == t.WindowStmt("row", t.WindowExpr("a", (t.Point(t.Aff.var("r")), t.Interval(t.Aff(), t.Aff((), 8)))))
    assert isinstance(call, t.Call) and call.proc == "scale_row"
    assert p.body[1].body == (t.Pass(),)


def test_egglog_encoding_decodes_to_the_same_term():
    # with no rules run, the e-graph holds exactly the lowered term; extraction must give it back
    from exo_egraph.saturate import Budget
    from exo_egraph.targets.cpu import saturate_term
    from exo_egraph.extract.cost import CpuCost, buffers_of
    from exo_egraph.extract.extractors import extract

    for k in (K.matmul16, K.clamp_rows, K.calls_and_windows, K.inner_alloc, K.shifted_pair):
        term = lower(k)
        s = saturate_term(term, budget=Budget(iterations=0))
        assert s.stats.schedules == 1
        (best,) = extract(s.view, CpuCost(buffers_of(term)))
        assert best.proc == term


def test_constant_arithmetic_is_folded_as_exo_simplify_folds_it():
    from exo.stdlib.scheduling import simplify

    assert lower(K.const_arith) == lower(simplify(K.const_arith))
    a_stmt = lower(K.const_arith).body[0].body[0]
    assert a_stmt.rhs.rhs == t.Const("0.30000000000000004", "R")  # Python's double, as Exo computes it


def test_a_size_divided_by_a_constant_is_one_symbol_and_an_iterator_divided_is_refused():
    """After ``divide_loop(p, "j", 3, ..., tail="cut")`` on a loop of ``n`` trips, Exo writes
    ``seq(0, n / 3)`` and a tail of ``n % 3``: fixed for the call, as ``n`` is, so each lowers as a
    symbol of its own (printed as Exo reads it back). An iterator divided still says which
    operator and where (`test_non_affine_index_is_named_with_its_line`)."""
    from exo.stdlib.scheduling import divide_loop

    p = lower(divide_loop(K.scale_rows_n, "j", 3, ["jo", "ji"], tail="cut"))
    jo, tail = p.body[0].body
    assert jo.var == "jo" and jo.hi == t.Aff.var("(n / 3)") and str(jo.hi.scale(3)) == "3 * (n / 3)"
    assert tail.hi == t.Aff.var("(n % 3)")
    ji = jo.body[0]
    assert ji.body[0].idx[1] == t.Aff.of(jo=3, ji=1)
