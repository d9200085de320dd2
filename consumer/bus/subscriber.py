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
- Acks and nacks go through ``ack_with_response`` / ``nack_with_response``:
  with exactly-once delivery on the subscription, Pub/Sub confirms each, and
  one it refuses (an ``AcknowledgeError``) is logged; the message then comes
  again, and the run recorded in the database answers the redelivery
  without a second run. Without exactly-once the client answers success at
  once, so the same code serves both.
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
from google.cloud.pubsub_v1.subscriber.exceptions import AcknowledgeError
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

from ..errors import ConfigError
from ..settings import Settings
from .handler import Delivery, Outcome, RequestHandler
from .publisher import EventPublisher, pubsub_failure

log = logging.getLogger(__name__)

#: Seconds of the grace period kept for acking, nacking and flushing after a run is given up.
_SHUTDOWN_MARGIN = 5.0
#: The shortest lease the client library asks for (it lengthens it to the 99th percentile of past runs, up to
#: 10 min). Its lease thread renews a lease before 0.9 of it has passed, so 20 s leaves 2 s to spare at least; a
#: process killed mid-run has its message back within 20 s. The numerical kernels release the GIL
#: (``nogil=True``), so a CPU-bound fit does not hold the thread up.
LEASE_SECONDS = 20
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
        #: Whether the subscription has a retry policy (read by ``check_subscription``).
        self.backs_off = True

    # --- health -----------------------------------------------------------------------------

    def alive(self) -> bool:
        """The process is serving: pulling, or shutting down as asked."""
        return self.stopping.is_set() or self._streaming.is_set()

    def subscription_reachable(self, timeout: float = 1.5) -> bool:
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
                found = self.subscriber.get_subscription(
                    subscription=self.subscription, timeout=_START_CHECK_SECONDS,
                    retry=Retry(initial=0.25, maximum=2.0, timeout=_START_CHECK_SECONDS))
            # Deferred requests (a busy scope) are nacked at once when the retry policy spaces redeliveries.
            self.backs_off = "retry_policy" in found
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
                min_duration_per_lease_extension=LEASE_SECONDS)
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
            self._settle(message, Outcome.NACK)  # arrived while shutting down: leave it for the next replica
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
            if outcome is Outcome.DEFER and self.backs_off:
                # Nacked at once, not after a pause: the subscription's retry policy spaces its redeliveries
                # and the requests behind it (other scopes') go first; this replica takes the next one now.
                outcome = Outcome.NACK
            elif outcome in (Outcome.NACK, Outcome.DEFER) and not self.stopping.is_set():
                outcome = Outcome.NACK
                # The subscription's retry policy backs off between redeliveries; pausing here too keeps a
                # broker without one (or an emulator) from redelivering in a tight loop while, say, the
                # database is down. A shutdown cuts the pause short.
                self.stopping.wait(min(2.0 ** ((message.delivery_attempt or 1) - 1), _MAX_RETRY_PAUSE))
            self._settle(message, outcome)
            log.debug("message %s %sed after %.2f s", message.message_id, outcome.value, time.monotonic() - started)

    def _settle(self, message, outcome: Outcome) -> None:
        """Ack or nack ``message``; a refusal from Pub/Sub (exactly-once delivery) is logged when it comes."""
        confirmation = message.ack_with_response() if outcome is Outcome.ACK else message.nack_with_response()
        confirmation.add_done_callback(lambda done: _log_refusal(message.message_id, outcome, done))


def _log_refusal(message_id: str, outcome: Outcome, confirmation) -> None:
    """One line for an ack or nack that Pub/Sub refused, saying what follows from it."""
    try:
        confirmation.result(timeout=0)
        return
    except AcknowledgeError as error:
        why = error.error_code.name + (f": {str(error.info).splitlines()[0][:200]}" if error.info else "")
    except Exception as error:  # the client's own failure to send it: the same consequence
        why = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
    if outcome is Outcome.ACK:
        log.warning("Pub/Sub refused the ack of message %s (%s): it will deliver the message again, and the "
                    "redelivery finds this delivery's outcome recorded in the database (a finished run is answered "
                    "again, never run again)",
                    message_id, why)
    else:
        log.warning("Pub/Sub refused the nack of message %s (%s): the message comes back when its ack deadline "
                    "passes rather than at once", message_id, why)
