"""RecentChains answers a walk exactly as the SQL walk would, or not at all."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.store.chains import RecentChains
from core.types import StoredMessage


def reference_walk(chain: list[StoredMessage], budget: int, depth: int) -> list[StoredMessage]:
    """What SQLStore.history's recursive query returns (oldest first)."""
    out: list[StoredMessage] = []
    used = 0
    for message in reversed(chain):
        if len(out) >= depth or used + message.token_count > budget:
            break
        used += message.token_count
        out.append(message)
    return out[::-1]


def messages(tokens: list[int]) -> list[StoredMessage]:
    chain: list[StoredMessage] = []
    for i, count in enumerate(tokens):
        parent = chain[-1].id if chain else None
        chain.append(StoredMessage(f"m{i}", "c", parent, "user", f"t{i}", count))
    return chain


@settings(max_examples=300, deadline=None)
@given(
    tokens=st.lists(st.integers(0, 20), min_size=2, max_size=30),
    walks=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), min_size=1, max_size=6),
    first_read=st.integers(0, 30),
)
def test_a_cached_walk_is_the_sql_walk(
    tokens: list[int], walks: list[tuple[int, int]], first_read: int
) -> None:
    chain = messages(tokens)
    cache = RecentChains()
    # A walk read from the database at some point, then turns committed on top of it.
    cut = min(first_read, len(chain) - 1)
    budget, depth = walks[0]
    if cache.walk(chain[cut].id, budget, depth) is None:
        cache.remember(reference_walk(chain[: cut + 1], budget, depth))
    for i in range(cut + 1, len(chain), 2):
        cache.extend(chain[i - 1].id, tuple(chain[i : i + 2]))
    for budget, depth in walks:
        for end in range(len(chain)):
            got = cache.walk(chain[end].id, budget, depth)
            if got is not None:
                assert got == reference_walk(chain[: end + 1], budget, depth)


def test_a_turn_on_a_remembered_chain_is_answered_from_memory() -> None:
    chain = messages([3, 4, 5, 6])
    cache = RecentChains()
    assert cache.walk("m1", 100, 10) is None
    cache.remember(chain[:2])
    cache.extend("m1", (chain[2], chain[3]))
    assert cache.walk("m3", 100, 10) == chain
    assert cache.walk("m3", 11, 10) == chain[2:]
    assert cache.walk("m3", 100, 1) == chain[3:]


def test_a_chain_cut_by_the_budget_answers_only_walks_that_stop_inside_it() -> None:
    chain = messages([5, 5, 5, 5, 5, 5])
    cache = RecentChains()
    assert cache.walk("m3", 10, 10) is None  # the bot's budget: 10 tokens
    cache.remember(reference_walk(chain[:4], 10, 10))  # m2, m3: m1 is not known
    assert cache.walk("m3", 10, 10) is None  # would m1 fit? only the database knows
    cache.extend("m3", (chain[4], chain[5]))  # the next turn
    assert cache.walk("m5", 10, 10) == chain[4:]  # stops before m3: known to be right
    assert cache.walk("m5", 20, 10) is None  # would need m1, not kept


def test_the_oldest_chains_are_dropped() -> None:
    cache = RecentChains(max_chains=2)
    chain = messages([1, 1, 1])
    for message in chain:
        cache.extend(None, (message,))
    assert cache.walk("m0", 10, 10) is None
    assert cache.walk("m2", 10, 10) == [chain[2]]
