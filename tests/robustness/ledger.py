"""The message ledger (docs/robustness.md, the message ledger; invariant I5).

Every message a fault test sends is stamped ``L|<session>|<seq>|<padding>``.
The harness records what was sent and what each page saw, then counts:

- **sent**: stamped messages handed to the server (or to a client ``send``);
- **delivered**: distinct (session, seq) pairs the page saw;
- **re-delivered**: a pair seen again after a fault was recorded for its session
  (a requeued message that had in fact arrived);
- **duplicates**: a pair seen again with no fault in between;
- **lost**: sent, never delivered, and not covered by a documented drop;
- **order violations**: a pair delivered after a later seq of the same session
  (re-deliveries excluded);
- **dropped**: losses covered by a documented window or policy (``allow``),
  reported apart and never counted as lost.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

PREFIX = "L|"


@dataclasses.dataclass
class Report:
    sent: int = 0
    delivered: int = 0
    redelivered: int = 0
    duplicates: int = 0
    lost: int = 0
    order_violations: int = 0
    dropped: int = 0

    def __add__(self, other: Report) -> Report:
        return Report(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )

    def row(self) -> str:
        return (
            f"{self.sent} / {self.delivered} / {self.redelivered} / {self.duplicates} / "
            f"{self.lost} / {self.order_violations}"
        )


class Ledger:
    """Counts sent and delivered messages per session; see the module docstring."""

    def __init__(self) -> None:
        self._next: dict[str, int] = defaultdict(int)
        self._sent: dict[str, set[int]] = defaultdict(set)
        self._seen: dict[str, dict[int, int]] = defaultdict(dict)  # seq -> fault epoch seen at
        self._high: dict[str, int] = defaultdict(lambda: -1)
        self._epoch: dict[str, int] = defaultdict(int)
        self._allowed: dict[str, set[int]] = defaultdict(set)
        self.redelivered = 0
        self.duplicates = 0
        self.order_violations = 0
        self.foreign: list[str] = []  # delivered text that is no ledger message

    def stamp(self, session: str, pad: int = 0) -> str:
        """A new message for ``session``, recorded as sent."""
        seq = self._next[session]
        self._next[session] = seq + 1
        self._sent[session].add(seq)
        return f"{PREFIX}{session}|{seq}|" + "x" * pad

    @staticmethod
    def parse(message: str) -> tuple[str, int] | None:
        if not message.startswith(PREFIX):
            return None
        parts = message.split("|", 3)
        if len(parts) < 4 or not parts[2].isdigit():
            return None
        return parts[1], int(parts[2])

    def fault(self, session: str) -> None:
        """A fault hit ``session``: a repeat seen after this counts as a re-delivery."""
        self._epoch[session] += 1

    def allow(self, session: str, seq: int) -> None:
        """A loss of (session, seq) is covered by a documented window or policy."""
        self._allowed[session].add(seq)

    def delivered(self, message: str) -> None:
        """The page saw ``message``."""
        key = self.parse(message)
        if key is None:
            self.foreign.append(message[:80])
            return
        session, seq = key
        seen = self._seen[session]
        if seq in seen:
            if seen[seq] < self._epoch[session]:
                self.redelivered += 1
            else:
                self.duplicates += 1
            seen[seq] = self._epoch[session]
            return
        seen[seq] = self._epoch[session]
        if seq < self._high[session]:
            self.order_violations += 1
        else:
            self._high[session] = seq

    def missing(self, session: str) -> list[int]:
        """Seqs of ``session`` sent and not (yet) delivered."""
        return sorted(self._sent[session] - self._seen[session].keys())

    def report(self) -> Report:
        r = Report(
            redelivered=self.redelivered,
            duplicates=self.duplicates,
            order_violations=self.order_violations,
        )
        for session, sent in self._sent.items():
            seen = self._seen[session].keys()
            r.sent += len(sent)
            r.delivered += len(sent & seen)
            unseen = sent - seen
            allowed = unseen & self._allowed[session]
            r.dropped += len(allowed)
            r.lost += len(unseen) - len(allowed)
        return r

    def assert_clean(self, *, redelivered_ok: bool = True) -> Report:
        """Nothing lost, duplicated or out of order; returns the report."""
        r = self.report()
        assert not self.foreign, f"unexpected messages: {self.foreign[:3]}"
        assert r.lost == 0, f"lost messages: {r}"
        assert r.duplicates == 0, f"duplicates: {r}"
        assert r.order_violations == 0, f"order violations: {r}"
        if not redelivered_ok:
            assert r.redelivered == 0, f"re-delivered: {r}"
        return r
