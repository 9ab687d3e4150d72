"""Groups take part in ``>>`` and ``<<`` like tasks, and misuse says where and what to do."""

from __future__ import annotations

import pytest

import phloem
from phloem import DefinitionError, group, pipeline, task


@task
def one() -> int:
    return 1


@task
def add(a: int, b: int = 0) -> int:
    return a + b


def _ups(p: phloem.Pipeline) -> dict[str, set[str]]:
    return {t: set(s.upstream) for t, s in p.spec.tasks.items()}


def test_group_to_group_orders_every_leaf_before_every_root() -> None:
    @pipeline
    def p() -> None:
        with group("a") as ga:
            x = one.with_options(name="x")()
            add.with_options(name="y")(x)
            add.with_options(name="z")(x)
        with group("b") as gb:
            one.with_options(name="r1")()
            r2 = one.with_options(name="r2")()
            add.with_options(name="inner")(r2)
        ga >> gb

    ups = _ups(p)
    # the leaves of a (y, z) come before the roots of b (r1, r2); inner follows r2 only
    assert ups["b.r1"] == {"a.y", "a.z"}
    assert ups["b.r2"] == {"a.y", "a.z"}
    assert ups["b.inner"] == {"b.r2"}
    assert ups["a.x"] == set()


def test_lshift_is_the_mirror_of_rshift() -> None:
    def build(direction: str) -> phloem.Pipeline:
        @pipeline(name=f"p_{direction}")
        def p() -> None:
            with group("a") as ga:
                add(one())
            with group("b") as gb:
                add(one())
            if direction == "rshift":
                ga >> gb
            else:
                gb << ga

        return p

    assert _ups(build("rshift")) == _ups(build("lshift"))
    assert _ups(build("lshift"))["b.one"] == {"a.add"}


def test_groups_tasks_and_lists_mix_in_both_directions() -> None:
    @pipeline
    def p() -> None:
        start = one.with_options(name="start")()
        with group("g") as g:
            add(one())
        with group("h") as h:
            one()
        end = one.with_options(name="end")()
        side = one.with_options(name="side")()
        start >> g >> end  # chains return the right-hand side
        [g, side] >> h
        end << [h]
        h << start

    ups = _ups(p)
    assert ups["g.one"] == {"start"}
    assert ups["end"] == {"g.add", "h.one"}
    assert ups["h.one"] == {"g.add", "side", "start"}


def test_a_list_on_the_left_of_a_group() -> None:
    @pipeline
    def p() -> None:
        a, b = one(), one()
        with group("g") as g:
            one()
        [a, b] >> g
        g << [a]

    assert _ups(p)["g.one"] == {"one", "one__1"}


def test_nested_groups_count_their_inner_tasks() -> None:
    @pipeline
    def p() -> None:
        with group("outer") as outer:
            first = one.with_options(name="first")()
            with group("inner") as inner:
                add(first)
        last = one.with_options(name="last")()
        outer >> last
        assert inner.group_id == "outer.inner"

    ups = _ups(p)
    assert ups["last"] == {"outer.inner.add"}


def test_the_handle_lists_its_tasks_and_roots_and_leaves() -> None:
    seen: dict[str, object] = {}

    @pipeline
    def p() -> None:
        with group("g") as g:
            a = one()
            add(a)
            add(a)
        seen["g"] = (g.task_ids, g.roots, g.leaves, repr(g))

    task_ids, roots, leaves, text = seen["g"]  # type: ignore[misc]
    assert task_ids == ("g.one", "g.add", "g.add__1")
    assert roots == ("g.one",)
    assert leaves == ("g.add", "g.add__1")
    assert "g" in text and "3 tasks" in text


def test_edges_added_after_the_block_change_roots_and_leaves() -> None:
    @pipeline
    def p() -> None:
        with group("g") as g:
            a = one.with_options(name="a")()
            b = one.with_options(name="b")()
        a >> b  # now b is not a root and a is not a leaf
        after = one.with_options(name="after")()
        before = one.with_options(name="before")()
        g >> after
        before >> g

    ups = _ups(p)
    assert ups["after"] == {"g.b"}
    assert ups["g.a"] == {"before"}
    assert ups["g.b"] == {"g.a"}


def test_ordering_a_group_into_itself_is_a_cycle() -> None:
    with pytest.raises(phloem.CycleError, match=r"test_dsl_groups\.py:\d+"):

        @pipeline
        def p() -> None:
            with group("g") as g:
                add(one())
            g >> g


def test_a_cycle_through_groups_names_its_tasks_and_line() -> None:
    with pytest.raises(phloem.CycleError, match=r"test_dsl_groups\.py:\d+.*cycle"):

        @pipeline
        def p() -> None:
            with group("a") as ga:
                one()
            with group("b") as gb:
                one()
            ga >> gb
            gb >> ga


def test_an_empty_group_cannot_be_ordered() -> None:
    where = r"test_dsl_groups\.py:\d+: "
    with pytest.raises(DefinitionError, match=where + "group 'empty' has no tasks"):

        @pipeline
        def p() -> None:
            with group("empty") as g:
                pass
            g >> one()


def test_a_group_of_another_pipeline_is_refused_with_location() -> None:
    holder: dict[str, object] = {}

    @pipeline
    def first() -> None:
        with group("g") as g:
            one()
        holder["g"] = g

    with pytest.raises(
        DefinitionError, match=r"test_dsl_groups\.py:\d+: group 'g' belongs to pipeline 'first'"
    ):

        @pipeline
        def second() -> None:
            holder["g"] >> one()  # type: ignore[operator]


def test_a_group_used_after_its_pipeline_was_defined_is_refused() -> None:
    holder: dict[str, object] = {}

    @pipeline
    def first() -> None:
        with group("g") as g:
            one()
        holder["g"] = g
        holder["t"] = one()

    with pytest.raises(DefinitionError, match=r"test_dsl_groups\.py:\d+: .*outside.*'first'"):
        holder["t"] >> holder["g"]  # type: ignore[operator]
    with pytest.raises(DefinitionError, match="outside"):
        holder["g"] >> holder["t"]  # type: ignore[operator]
    # nothing changed in the defined pipeline
    assert first.spec.tasks["g.one"].upstream == ()


@pytest.mark.parametrize(
    ("operand", "hint"),
    [
        (5, r"got 5 \(int\)"),
        ("one", r"got 'one' \(str\)"),
        (one, r"task 'one' was not called; call it \(one\(\)\)"),
        ([5], r"got 5 \(int\)"),
        ({"a": 1}, r"\(dict\)"),
    ],
)
@pytest.mark.parametrize("side", ["right", "left"])
def test_rshift_with_a_non_task_says_where_and_what_it_takes(
    operand: object, hint: str, side: str
) -> None:
    with pytest.raises(DefinitionError, match=rf"test_dsl_groups\.py:\d+: .*{hint}") as info:

        @pipeline
        def p() -> None:
            with group("g") as g:
                one()
            if side == "right":
                g >> operand  # type: ignore[operator]
            else:
                operand >> g  # type: ignore[operator]

    assert "tasks and groups" in str(info.value) or "not called" in str(info.value)


def test_rshift_of_a_task_with_a_non_task_says_where() -> None:
    with pytest.raises(DefinitionError, match=r"test_dsl_groups\.py:\d+: .*got None"):

        @pipeline
        def p() -> None:
            one() >> None  # type: ignore[operator]


def test_group_outside_a_pipeline_body_says_where() -> None:
    where = r"test_dsl_groups\.py:\d+: "
    with pytest.raises(DefinitionError, match=where + r"group\('g'\) is used"), group("g"):
        pass


def test_group_ids_of_a_run_follow_the_order() -> None:
    @pipeline
    def p() -> None:
        with group("a") as ga:
            one()
        with group("b") as gb:
            add.with_options(name="two")(1, 1)
        ga >> gb

    result = phloem.run(p, executor="inline", store="memory")
    assert result.state == phloem.RunState.SUCCESS
    assert set(result.states()) == {"a.one", "b.two"}


def test_a_group_is_one_with_block() -> None:
    with pytest.raises(DefinitionError, match=r"test_dsl_groups\.py:\d+: group 'g' was opened"):

        @pipeline
        def p() -> None:
            with group("g") as g:
                one()
            with g:
                one()


def test_a_group_is_not_a_task_argument() -> None:
    with pytest.raises(DefinitionError, match="group 'g' cannot be passed to a task"):

        @pipeline
        def p() -> None:
            with group("g") as g:
                one()
            total(g)  # type: ignore[arg-type]


@task
def total(xs: list[int]) -> int:
    return sum(xs)
