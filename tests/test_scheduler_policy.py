"""The serving policy by itself (serving/scheduler.py): no engine, no thread."""
import concurrent.futures

from gmlm_engine.options import validate_options
from gmlm_engine.serving.scheduler import Admission, Item, Job, cost, width


def _job(widths):
    job = Job([None] * len(widths), len(widths), concurrent.futures.Future(), None, False)
    return job, [Item(job, i, [5, 1], {}, w) for i, w in enumerate(widths)]


def test_width_and_cost_count_positions():
    o = lambda obj="gmlm", **k: validate_options(obj, 96, **k)  # noqa: E731
    assert width("gmlm", 96, 10, o(length_beam=3, length_offset=0)) == 3 * (15 + 4)
    assert width("gmlm", 96, 10, o(length_offset=95)) == 2 * 96                     # clamped to the model's maximum
    assert cost("gmlm", 96, 10, o(iterations=5, length_beam=1, length_offset=0)) == 5 * 19
    assert width("ar", 96, 10, o("ar", beam_size=4)) == cost("ar", 96, 10, o("ar", beam_size=4)) == 4 * 19


def test_jobs_take_turns_and_one_holds_at_most_half_of_a_pass():
    pol = Admission("continuous", max_positions=100, max_batch=64, max_live=256)
    big, big_items = _job([10] * 20)
    small, small_items = _job([10, 10])
    pol.enqueue(big, big_items)
    pol.enqueue(small, small_items)
    take = pol.admit(running=0)
    assert [x.job is small for x in take].count(True) == 2                   # the small job gets in at once
    assert sum(x.width for x in take if x.job is big) == 50                  # the big one: half the pass
    assert pol.live_positions == 70 and pol.queued == 15
    for x in take:
        pol.release(x)
    assert pol.live_positions == 0 and big.live_positions == 0


def test_a_text_wider_than_is_free_reserves_the_room():
    pol = Admission("continuous", max_positions=100, max_batch=64, max_live=256)
    small, items = _job([10] * 4)
    pol.enqueue(small, items)
    running = pol.admit(running=0)
    wide, wide_items = _job([80])
    pol.enqueue(wide, wide_items)
    later, later_items = _job([10])
    pol.enqueue(later, later_items)
    assert pol.admit(running=len(running)) == []                             # nobody overtakes the wide text
    for x in running:
        pol.release(x)
    assert [x.job for x in pol.admit(running=0)] == [wide, later]            # first, then the room it left


def test_a_failed_pass_restarts_each_job_alone_and_only_a_job_failing_alone_fails():
    pol = Admission("continuous", max_positions=100, max_batch=64, max_live=256)
    a, a_items = _job([10, 10])
    b, b_items = _job([10])
    pol.enqueue(a, a_items)
    pol.enqueue(b, b_items)
    take = pol.admit(running=0)
    for x in take:
        pol.release(x)
    pol.isolate(RuntimeError("out of memory"), take, running=0)
    assert not a.future.done() and not b.future.done() and a.alone and b.alone
    first = pol.admit(running=0)
    assert len({x.job for x in first}) == 1                                  # one job at a time
    for x in first:
        pol.release(x)
    pol.isolate(RuntimeError("out of memory"), first, running=0)
    assert first[0].job.future.exception() is not None                       # it failed alone: its error

