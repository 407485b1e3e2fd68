"""Racing: which candidates of a paired grid get another seed, replayed from the results the study holds.

Round r (1-based) trains seed r - 1 of every candidate still in the race, the control always among them. After
a round, each candidate in the race is compared, seed by seed on the seeds both have, with the members of the
current front that cost no more than it in every cost objective (the control, which costs least, is always
one). The interval is the report's paired one (`report.noise.compare_paired` on the study's pooled paired
noise, the larger of that std and the pair's own), kept on the pool's degrees of freedom: a pair's own std on
two or three seeds has one or two, whose t quantile (12.7, 4.3) would keep nearly every candidate racing to
the cap. A comparison is

- `above` / `below`: the interval of (candidate - front member) lies above / below 0;
- `same`: the interval lies within +-margin (practically equal, so the costlier one is not worth having);
- `noisy`: open, and even the cap's seeds at this spread would leave it open (judged from three seeds on);
- `open`: another seed could still move it.

A candidate stops when it is `below` a cheaper front member (`dominated`: it cannot join the front), `same` as
one (`equivalent`), or `above` every one (`settled`: on the front, separated from everything cheaper), in each
case only once its comparison with the control is decided too, so that its verdict against the baseline would
not change with more seeds; a candidate `noisy` against the control or a front member stops as `noisy`; one
still open at the cap stops as `cap`. Above or below the control (a verdict) counts only from three seeds on:
on two, a candidate's own spread has one degree of freedom and cannot show that it is noisier than the rest,
and a noisy candidate whose two seeds happen to agree would get a verdict on the narrow pooled interval. A
candidate below a cheaper front member other than the control stops on two seeds when the control does not
separate from it yet. A front member that an open candidate is still open against runs the next seed with it,
whatever its own state, because a paired comparison grows only on the seeds both have. A candidate that leaves
the race never comes back; its results stay in the table and keep counting for the noise and the front.

The front is ranked on accuracy on the control's seeds (`adjusted_means`), as the report ranks a race.

Why this rule (irace's test after each block, on the report's own interval) rather than SMAC's doubling: a
grid's candidates are all known up front, so every one can be judged after every block, and the report's
interval is the one its verdicts will be read with. Seeds are blocks: round r is one trained start (paired
design), shared by every candidate.

The whole race is a pure function of the finished trials: replaying it round by round from the results
gives the same decisions on any worker and after any interruption. Torch-free.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from gcsearch.pareto import nondominated_ranks
from gcsearch.report.noise import PairedNoise, compare_paired, paired_differences, paired_noise
from gcsearch.study.spec import DEFAULT_RACE_MARGIN

OPEN, SETTLED, EQUIVALENT, DOMINATED, CAP = "open", "settled", "equivalent", "dominated", "cap"
NOISY = "noisy"  # open, but its spread is too wide for the cap's seeds to settle it: stopped
FAILED = "failed"  # a seed that failed for good (diverged) or was pruned: the candidate cannot go on
ABOVE, BELOW, SAME = "above", "below", "same"
# A candidate is called above or below the control (a verdict) only on three seeds or more: on two, its own
# spread has one degree of freedom and cannot show that it is noisier than the rest.
MIN_SEEDS_TO_SEPARATE = 3


@dataclass(frozen=True)
class Entry:
    """One candidate in the race: its accuracy by seed (repeat index) and its costs (lower is better)."""

    key: str
    by_seed: dict[int, float]
    costs: tuple[float, ...]
    failed_at: int | None = None  # the seed at which it failed for good or was pruned


@dataclass
class Decision:
    """Where a candidate stands: the seeds it has been given and its state (`open` while it races)."""

    seeds: int
    state: str = OPEN
    against: str | None = None  # the front member that decided it (dominated, equivalent)


@dataclass
class RaceState:
    """The race replayed: the round reached, every candidate's decision, and the points still to train."""

    round: int
    decisions: dict[str, Decision] = field(default_factory=dict)
    wanted: list[tuple[str, int]] = field(default_factory=list)  # (key, repeat) of the round under way
    done: bool = False

    def to_dict(self) -> dict[str, object]:
        """What the study records for the report: {key: {"seeds", "state", "against"}} and the round."""
        return {"round": self.round, "done": self.done,
                "candidates": {k: {"seeds": d.seeds, "state": d.state, "against": d.against}
                               for k, d in self.decisions.items()}}


def compare_to(entry: Entry, member: Entry, noise: PairedNoise, margin: float, max_repeats: int) -> str:
    """`entry` against a cheaper front member, on the seeds both have: above, below, same, open, or noisy (open,
    but even `max_repeats` seeds at this spread would leave the interval across 0 and wider than the margin)."""
    differences = paired_differences(entry.by_seed, member.by_seed)
    if not differences or noise.std is None:
        return OPEN
    own = statistics.stdev(differences) if len(differences) >= 2 else 0.0
    c = compare_paired(differences, replace(noise, std=max(noise.std, own)))
    if c.low is None or c.high is None:
        return OPEN
    if c.low > 0:
        return ABOVE
    if c.high < 0:
        return BELOW
    if -margin <= c.low and c.high <= margin:
        return SAME
    half_at_cap = (c.high - c.low) / 2 * math.sqrt(len(differences) / max(max_repeats, len(differences)))
    if MIN_SEEDS_TO_SEPARATE <= len(differences) < max_repeats and abs(c.delta) <= half_at_cap and \
            abs(c.delta) + half_at_cap > margin:  # on two seeds, a spread of one degree of freedom says too little
        return NOISY
    return OPEN


def cheaper(a: Entry, b: Entry) -> bool:
    """Whether `a` costs no more than `b` in every cost objective."""
    return all(x <= y for x, y in zip(a.costs, b.costs, strict=True))


def adjusted_means(entries: Sequence[Entry], control: str) -> dict[str, float]:
    """Each entry's accuracy on the control's seeds: the control's mean over its seeds plus the entry's mean
    paired difference to the control. Seeds differ in their starts by far more than candidates differ, so
    raw means over different seed sets would rank the seeds, not the candidates; on a balanced table this is
    the raw mean."""
    by_key = {e.key: e for e in entries}
    base = by_key[control].by_seed
    if not base:
        return {}
    level = sum(base.values()) / len(base)
    out = {control: level}
    for e in entries:
        differences = paired_differences(e.by_seed, base)
        if e.key != control and differences:
            out[e.key] = level + sum(differences) / len(differences)
    return out


def front_of(entries: Sequence[Entry], control: str) -> list[Entry]:
    """The non-dominated entries on (accuracy on the control's seeds, costs), as the report ranks a race."""
    means = adjusted_means(entries, control)
    scored = [e for e in entries if e.key in means]
    if not scored:
        return []
    loss = [[-means[e.key], *e.costs] for e in scored]
    ranks = nondominated_ranks(loss)
    return [e for e, rank in zip(scored, ranks, strict=True) if rank == 1]


def judge_round(entries: Sequence[Entry], control: str, racing: set[str], margin: float, max_repeats: int
                ) -> tuple[dict[str, Decision], set[str]]:
    """One round's decisions for the candidates in `racing` (the control excepted), and who runs the next seed.

    `entries` hold every candidate's results so far (the ones out of the race keep theirs)."""
    by_key = {e.key: e for e in entries}
    base = by_key[control]
    others = [by_key[k] for k in by_key if k != control]
    noise = paired_noise([e.by_seed for e in others], base.by_seed)
    front = front_of(entries, control)
    decisions: dict[str, Decision] = {}
    companions: set[str] = set()
    for key in sorted(racing - {control}):
        entry = by_key[key]
        members = [f for f in front if f.key != key and cheaper(f, entry)]
        if base not in members:
            members.append(base)
        outcomes = {f.key: compare_to(entry, f, noise, margin, max_repeats) for f in members}
        decision = Decision(seeds=len(entry.by_seed))
        # Separated from the control on too few seeds for a verdict: the control's comparison stays open.
        too_early = outcomes[control] in (ABOVE, BELOW) and \
            len(paired_differences(entry.by_seed, base.by_seed)) < MIN_SEEDS_TO_SEPARATE
        if too_early:
            outcomes[control] = OPEN
        below = [k for k, o in outcomes.items() if o == BELOW]
        below_cheaper = [k for k in below if k != control]
        same = [k for k, o in outcomes.items() if o == SAME]
        if below_cheaper and not too_early:
            decision.state, decision.against = DOMINATED, below_cheaper[0]
        elif outcomes[control] in (OPEN, NOISY):
            if NOISY in outcomes.values():
                decision.state = NOISY
        elif below:
            decision.state, decision.against = DOMINATED, below[0]
        elif same:
            decision.state, decision.against = EQUIVALENT, same[0]
        elif all(o == ABOVE for o in outcomes.values()):
            decision.state = SETTLED
        elif NOISY in outcomes.values():
            decision.state = NOISY
        if decision.state == OPEN:
            companions |= {k for k, o in outcomes.items() if o == OPEN}
        decisions[key] = decision
    go_on = {k for k, d in decisions.items() if d.state == OPEN}
    go_on |= companions & racing
    if go_on:
        go_on.add(control)
    return decisions, go_on


def replay(entries: Sequence[Entry], control: str, max_repeats: int, margin: float = DEFAULT_RACE_MARGIN
           ) -> RaceState:
    """The race as the results stand: round by round from seed 0, each round judged on the seeds before it.

    Returns the round under way with the points it still needs (`wanted`), or `done` once nobody races on."""
    full = {e.key: e for e in entries}
    if control not in full:
        raise ValueError(f"the control {control!r} has no entry")
    racing = set(full)
    decisions = {k: Decision(seeds=0) for k in full}
    for r in range(1, max_repeats + 1):
        seed = r - 1
        for key in sorted(racing):
            e = full[key]
            if e.failed_at is not None and e.failed_at <= seed:
                decisions[key] = Decision(seeds=len([s for s in e.by_seed if s < seed]), state=FAILED)
                racing.discard(key)
        if control not in racing:  # without the control of this seed nothing can be compared: the race ends
            break
        wanted = [(k, seed) for k in sorted(racing) if seed not in full[k].by_seed]
        if wanted:
            return RaceState(round=r, decisions=decisions, wanted=wanted)
        view = [Entry(e.key, {s: a for s, a in e.by_seed.items() if s <= seed}, e.costs) for e in full.values()]
        judged, go_on = judge_round(view, control, racing, margin, max_repeats)
        for key in racing:
            decisions[key].seeds = r
        for key, decision in judged.items():
            decisions[key].state, decisions[key].against = decision.state, decision.against
        if r == max_repeats:  # the cap: whoever is still open stops here
            for key in racing - {control}:
                if decisions[key].state == OPEN:
                    decisions[key].state = CAP
            break
        racing = go_on
        if not racing:
            break
    if decisions[control].state != FAILED:
        decisions[control].state = SETTLED
    return RaceState(round=max(1, max(d.seeds for d in decisions.values())), decisions=decisions, done=True)
