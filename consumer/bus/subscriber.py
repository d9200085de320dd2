"""The long-running consumer: streaming pull on calibration-requested, one run at a time.

- Flow control admits one message at a time per replica, and the client
  library keeps extending its lease for as long as the run takes (up to
  ``MIRT_MAX_LEASE_SECONDS``).
- SIGTERM or SIGINT stops the pulling at once; the run in flight may finish
  within ``MIRT_SHUTDOWN_GRACE_SECONDS`` less a margin, else it is given up
  before it writes anything and its message nacked; the process exits
  within the grace period either way.
- A broken stream (the subscription deleted, permissions revoked, the
  service unreachable) is logged and re-opened with backoff; only a broken
  configuration at start stops the process.
"""

from __future__ import annotations

import concurrent.futures
import logging
import signal
import threading
import time

import sqlalchemy as sa
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

from ..errors import ConfigError
from ..settings import Settings
from .handler import Delivery, Outcome, RequestHandler
from .publisher import EventPublisher, pubsub_failure

log = logging.getLogger(__name__)

#: Seconds of the grace period kept for acking, nacking and flushing after a run is given up.
_SHUTDOWN_MARGIN = 5.0
_LEASE_EXTENSION_SECONDS = 60
#: Longest pause before nacking a request that failed for a transient reason.
_MAX_RETRY_PAUSE = 10.0
#: How long the check at start may retry an unreachable Pub/Sub before the process stops with exit status 2.
_START_CHECK_SECONDS = 10.0


class CalibrationConsumer:
    """Pulls calibration requests and hands each to a ``RequestHandler``, one at a time."""

    def __init__(self, settings: Settings, engine: sa.Engine,
                 subscriber: pubsub_v1.SubscriberClient | None = None,
                 publisher: EventPublisher | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self.subscription = self.subscriber.subscription_path(settings.require_project(),
                                                              settings.requests_subscription)
        self.stopping = threading.Event()
        self.abandon = threading.Event()
        self.handler = RequestHandler(engine, settings, publisher or EventPublisher(settings),
                                      should_stop=self.abandon.is_set)
        self._future = None
        self._streaming = threading.Event()
        self._busy = threading.Lock()

    # --- health -----------------------------------------------------------------------------

    def alive(self) -> bool:
        """The process is serving: pulling, or shutting down as asked."""
        return self.stopping.is_set() or self._streaming.is_set()

    def subscription_reachable(self, timeout: float = 5.0) -> bool:
        try:
            self.subscriber.get_subscription(subscription=self.subscription, timeout=timeout)
            return True
        except Exception:
            return False

    # --- lifecycle ----------------------------------------------------------------------------

    def check_subscription(self) -> None:
        """Fail at start, with a clear line, when the subscription does not exist or cannot be read."""
        try:
            with pubsub_failure():  # unreachable: one line within seconds, not a minute of retries
                self.subscriber.get_subscription(subscription=self.subscription, timeout=_START_CHECK_SECONDS,
                                                 retry=Retry(initial=0.25, maximum=2.0,
                                                             timeout=_START_CHECK_SECONDS))
        except google_exceptions.NotFound:
            raise ConfigError(f"subscription {self.subscription} does not exist",
                              "create it (see infra/) or set MIRT_REQUESTS_SUBSCRIPTION and GOOGLE_CLOUD_PROJECT")
        except google_exceptions.PermissionDenied:
            raise ConfigError(f"no permission to read subscription {self.subscription}",
                              "grant the service account roles/pubsub.subscriber and roles/pubsub.viewer on it "
                              "(subscriber alone cannot read the subscription's settings)")

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.stop(signal.Signals(signum).name))

    def stop(self, reason: str = "stop requested") -> None:
        """Stop pulling now; give the run in flight until the grace period's end, less a margin."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        budget = max(self.settings.shutdown_grace_seconds - _SHUTDOWN_MARGIN, 0.0)
        log.info("%s: no new requests are pulled; a run in flight has %.0f s to finish before it is given up",
                 reason, budget)
        if self._future is not None:
            self._future.cancel()
        timer = threading.Timer(budget, self._give_up)
        timer.daemon = True
        timer.start()

    def _give_up(self) -> None:
        if self._busy.locked():
            # The run stops at its next checkpoint, unless it is already writing, which it then finishes:
            # its own outcome line says which (abandoned and redelivered, or succeeded).
            log.warning("grace period nearly over: asking the run in flight to stop before it writes")
        self.abandon.set()

    def serve(self) -> None:
        """Pull and handle requests until ``stop`` is called; re-open a broken stream with backoff."""
        backoff = 1.0
        while not self.stopping.is_set():
            flow_control = pubsub_v1.types.FlowControl(
                max_messages=1, max_lease_duration=self.settings.max_lease_seconds,
                min_duration_per_lease_extension=_LEASE_EXTENSION_SECONDS)
            scheduler = ThreadScheduler(concurrent.futures.ThreadPoolExecutor(max_workers=1))
            self._future = self.subscriber.subscribe(self.subscription, self._on_message, flow_control=flow_control,
                                                     scheduler=scheduler, await_callbacks_on_shutdown=True)
            self._streaming.set()
            log.info("consumer pulling from %s (one request at a time)", self.subscription)
            if self.stopping.is_set():  # a signal arrived while the stream was opening
                self._future.cancel()
            try:
                self._future.result()
                backoff = 1.0
            except Exception as problem:  # the stream broke: log it, wait, re-open
                self._streaming.clear()
                if self.stopping.is_set():
                    break
                log.error("the streaming pull on %s stopped: %s; re-opening in %.0f s", self.subscription,
                          str(problem).splitlines()[0][:300] if str(problem) else type(problem).__name__, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 60.0)
        self._streaming.clear()
        log.info("consumer stopped")

    def _on_message(self, message) -> None:
        delivery = Delivery(message_id=message.message_id, data=message.data,
                            attributes=dict(message.attributes), delivery_attempt=message.delivery_attempt)
        if self.stopping.is_set():
            message.nack()  # arrived while shutting down: leave it for the next replica
            return
        with self._busy:
            started = time.monotonic()
            try:
                outcome = self.handler.handle(delivery)
            except Exception as problem:  # never let one message take the consumer down
                log.error("request in message %s failed unexpectedly: %s: %s; nacked", message.message_id,
                          type(problem).__name__, problem)
                log.debug("traceback", exc_info=problem)
                outcome = Outcome.NACK
            if outcome is Outcome.NACK and not self.stopping.is_set():
                # The subscription's retry policy backs off between redeliveries; pausing here too keeps a
                # broker without one (or an emulator) from redelivering in a tight loop while, say, the
                # database is down. A shutdown cuts the pause short.
                self.stopping.wait(min(2.0 ** ((message.delivery_attempt or 1) - 1), _MAX_RETRY_PAUSE))
            (message.ack if outcome is Outcome.ACK else message.nack)()
            log.debug("message %s %sed after %.2f s", message.message_id, outcome.value, time.monotonic() - started)
            if outcome is Outcome.DEFER:
                # Not a nack: Pub/Sub would hand it straight back (the local server at once) while other
                # scopes' requests wait. Its lease runs out after the delay and it is redelivered then,
                # to whichever replica is free; this one is free for the next request now.
                message.modify_ack_deadline(self.settings.busy_scope_delay_seconds)
                message.drop()
                log.debug("message %s deferred for %d s", message.message_id,
                          self.settings.busy_scope_delay_seconds)
                return
