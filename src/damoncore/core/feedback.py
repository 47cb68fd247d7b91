"""The kernel's one feedback controller, shared by quota goals and intervals auto-tuning."""

ULONG_MAX = (1 << 64) - 1
FEED_LOOP_GOAL = 10000
FEED_LOOP_MIN_INPUT = 10000


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
    if last_input < ULONG_MAX // diff:
        comp = last_input * diff // goal
    else:
        comp = last_input // goal * diff
    if over:
        return max(last_input - comp, FEED_LOOP_MIN_INPUT)
    if last_input < ULONG_MAX - comp:
        return last_input + comp
    return ULONG_MAX
