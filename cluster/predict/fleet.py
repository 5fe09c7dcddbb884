"""The run's actors, fed batches of tile ids, replaced when they die.

Kept apart from the driver's bookkeeping (checks, done record, summary): what
is sent where, and what happens to a dead actor's batches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

import ray
from ray.actor import ActorHandle

from cluster.predict.setup import TileResult


class Fleet:
    """The run's actors, each fed ``depth`` batches at a time.

    An actor that dies (its node lost, its process killed) has written none of
    its unreported tiles as far as the done record knows, so its batches go
    back in the queue for whichever actor is free next (a rewritten tile is
    byte-identical), and its slot gets a new actor, which Ray places on a node
    with free resources, up to ``limit`` times; once more, the fleet closes and
    ``gave_up`` says why. Batches go only to actors that have started, so a
    replacement with nowhere to go holds no tiles back: the run ends on the
    actors left (or, with none left, waits for a node to join).
    """

    def __init__(
        self,
        start: Callable[[], ActorHandle],
        actors: list[ActorHandle],
        batches: Iterator[list[str]],
        depth: int,
        limit: int,
    ) -> None:
        self.start, self.actors, self.batches = start, actors, batches
        self.depth, self.limit = depth, limit
        self.queue: deque[list[str]] = deque()  # batches given back, sent before new ones
        self.in_flight: dict[ray.ObjectRef, tuple[int, ActorHandle, list[str]]] = {}
        self.load = [0] * len(actors)  # batches in flight on each slot's current actor
        self.live = set(range(len(actors)))  # slots whose actor has started
        self.starting: dict[ray.ObjectRef, int] = {}  # a replacement's first call -> slot
        self.replaced = [0] * len(actors)
        self.lost: list[str] = []  # actors that died and were replaced, and why
        self.gave_up = ""  # why the run stops: an actor died once more than the limit
        self.closed = False  # send no more batches

    def work_left(self) -> bool:
        """Whether a batch is left to send (taking the next from the tile list into
        the queue: the list is lazy, its end known only by reaching it)."""
        if not self.queue:
            batch = next(self.batches, None)
            if batch is None:
                return False
            self.queue.append(batch)
        return True

    def busy(self) -> bool:
        """Anything to wait for: batches in flight, or replacements starting while
        tiles are left for them."""
        return bool(self.in_flight) or (
            bool(self.starting) and not self.closed and self.work_left()
        )

    def top_up(self) -> None:
        for slot in sorted(self.live):
            actor = self.actors[slot]
            while self.load[slot] < self.depth and not self.closed and self.work_left():
                batch = self.queue.popleft()
                self.in_flight[actor.predict.remote(batch)] = (slot, actor, batch)
                self.load[slot] += 1

    def wait(self) -> list[TileResult]:
        """The next batch's results; none when the news was an actor starting or dying."""
        ready, _ = ray.wait([*self.in_flight, *self.starting], num_returns=1)
        ref, results = ready[0], []
        if ref in self.starting:
            slot = self.starting.pop(ref)
            try:
                ray.get(ref)
                self.live.add(slot)
            except ray.exceptions.RayActorError as exc:
                self._lose(slot, exc)
        else:
            slot, actor, batch = self.in_flight.pop(ref)
            current = slot in self.live and actor is self.actors[slot]  # not a dead one's
            if current:
                self.load[slot] -= 1
            try:
                results = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self.queue.append(batch)
                if current:  # the first news of its death; its other batches follow
                    held = [b for _, a, b in self.in_flight.values() if a is actor]
                    self._lose(slot, exc, held=sum(map(len, [batch, *held])))
            except ray.exceptions.RayError as exc:
                results = [
                    TileResult(t, False, f"tile {t}: {type(exc).__name__}: {exc}") for t in batch
                ]
        self.top_up()
        return results

    def _lose(self, slot: int, exc: ray.exceptions.RayActorError, held: int = 0) -> None:
        ray.kill(self.actors[slot])  # if merely unreachable, it must not write on
        self.live.discard(slot)
        self.load[slot] = 0
        error = " ".join(str(exc).split())
        why = f"actor {slot} died holding {held} tiles ({type(exc).__name__}: {error})"
        if self.replaced[slot] >= self.limit:
            self.gave_up = f"{why}, after {self.replaced[slot]} replacements (the limit)"
            self.closed = True
            return
        self.replaced[slot] += 1
        self.lost.append(why)
        self.actors[slot] = self.start()
        self.starting[self.actors[slot].pid.remote()] = slot
