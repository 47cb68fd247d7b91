"""The kernel's one feedback controller, shared by quota goals and intervals auto-tuning.

It sits at the bottom of the package so that both the core (intervals tuning) and the
schemes (quota goals) import it without importing each other.
"""

from .units import BP, U64_MAX

#: the score the loop steers to (``damon_feed_loop_next_input()``'s goal)
FEED_LOOP_GOAL = BP
FEED_LOOP_MIN_INPUT = BP


def feed_loop_next_input(last_input: int, score: int) -> int:
    """damon_feed_loop_next_input(): next control input for a score against goal 10000.

    Over-achieving (score > goal) shrinks the input proportionally, under-achieving grows
    it; a score at twice the goal or more drops straight to the minimum input (10000).
    Integer arithmetic saturating at ULONG_MAX, as in the kernel.
    """
    goal = FEED_LOOP_GOAL
    if score == goal:
        return last_input
    if score >= goal * 2:
        return FEED_LOOP_MIN_INPUT
    over = score > goal
    diff = score - goal if over else goal - score
    if last_input < U64_MAX // diff:
        comp = last_input * diff // goal
    else:
        comp = last_input // goal * diff
    if over:
        return max(last_input - comp, FEED_LOOP_MIN_INPUT)
    if last_input < U64_MAX - comp:
        return last_input + comp
    return U64_MAX
