"""A publisher that records what the request handler would have sent to Pub/Sub."""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.bus import events
from consumer.run import RunSummary


@dataclass
class RecordingPublisher:
    """What the handler published: completed events (with whether each answers a rejection), requests, dead letters."""

    completed_events: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    dead_letters: list = field(default_factory=list)
    fail_completed: bool = False

    def completed(self, summary: RunSummary, *, rejected: bool = False) -> str:
        if self.fail_completed:
            raise RuntimeError("Pub/Sub is not answering")
        self.completed_events.append(events.completed_body(summary, rejected=rejected))
        return f"completed-{len(self.completed_events)}"

    def request(self, body: dict) -> str:
        self.requests.append(body)
        return f"request-{len(self.requests)}"

    def dead_letter(self, data, attributes, message_id, reason) -> str:
        self.dead_letters.append((message_id, reason))
        return f"dead-{len(self.dead_letters)}"
