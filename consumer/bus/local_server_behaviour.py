"""Where the local Pub/Sub server is made to behave as Pub/Sub does and cloudbox does not.

Installed in the server's own process, before it starts (``install``):

- **Flow control.** cloudbox's streaming pull sends every waiting message
  (up to 1,000) to whichever stream polls first, ignoring the
  ``max_outstanding_messages`` a client asks for; the client library then
  holds the surplus itself, so one consumer replica takes a whole fan-out
  while the others idle, and the messages it holds unread come round again
  every ack deadline. This streaming pull sends a stream no more messages
  than it may have outstanding: those sent whose ack deadline has not
  passed and that were not acknowledged or nacked.
- **Retry and dead-letter policies.** cloudbox's store backs off
  redeliveries by a subscription's retry policy and forwards a message to
  the dead-letter topic once it has been delivered ``max_delivery_attempts``
  times without an ack, but its gRPC front dropped both policies when a
  subscription was created: a nacked message came back at once, first in
  line, and forever. Both are kept now (and reported back by
  GetSubscription), so a nacked message waits its backoff while the others
  go first, and after its last attempt it goes to the subscriptions of the
  dead-letter topic, as on Pub/Sub. Unlike Pub/Sub, it is forwarded when
  its subscription is next pulled (a consumer pulls all the time), the
  forwarded message carries no ``CloudPubSubDeadLetterSource…``
  attributes, and a dead-letter topic without a subscription loses it.

Everything else (acks, ack deadline changes, redelivery of expired
messages, the delivery-attempt count) is cloudbox's store.
"""

from __future__ import annotations

import asyncio
import base64
import time

#: A stream that asks for no limit gets what cloudbox would send it at once.
_UNLIMITED = 1000
_POLL_SECONDS = 0.05


def install(grpc_server) -> None:
    """Patch ``cloudbox.services.pubsub.grpc_server`` (before ``create_server``)."""
    grpc_server._streaming_pull = _streaming_pull_of(grpc_server)
    grpc_server._sub_to_dict = _keeping_delivery_policies(grpc_server._sub_to_dict)
    grpc_server._sub_to_proto = _reporting_delivery_policies(grpc_server._sub_to_proto)


def _keeping_delivery_policies(sub_to_dict):
    """The subscription as cloudbox's store keeps it, with the retry and dead-letter policies it reads."""
    def with_policies(proto) -> dict:
        data = sub_to_dict(proto)
        if "retry_policy" in proto:
            policy = proto.retry_policy
            data["retryPolicy"] = {"minimumBackoff": f"{policy.minimum_backoff.total_seconds():g}s",
                                   "maximumBackoff": f"{policy.maximum_backoff.total_seconds():g}s"}
        if "dead_letter_policy" in proto and proto.dead_letter_policy.dead_letter_topic:
            policy = proto.dead_letter_policy
            # Pub/Sub's default when the field is left at 0 is 5 attempts.
            data["deadLetterPolicy"] = {"deadLetterTopic": policy.dead_letter_topic,
                                        "maxDeliveryAttempts": policy.max_delivery_attempts or 5}
        return data
    return with_policies


def _reporting_delivery_policies(sub_to_proto):
    """GetSubscription and the others answer with the policies kept, as Pub/Sub does."""
    def with_policies(data: dict):
        proto = sub_to_proto(data)
        retry, dead = data.get("retryPolicy"), data.get("deadLetterPolicy")
        if retry:
            proto.retry_policy.minimum_backoff = _seconds(retry["minimumBackoff"])
            proto.retry_policy.maximum_backoff = _seconds(retry["maximumBackoff"])
        if dead:
            proto.dead_letter_policy.dead_letter_topic = dead["deadLetterTopic"]
            proto.dead_letter_policy.max_delivery_attempts = dead["maxDeliveryAttempts"]
        return proto
    return with_policies


def _seconds(duration: str):
    from datetime import timedelta
    return timedelta(seconds=float(duration.rstrip("s")))


def _streaming_pull_of(grpc_server):
    store = grpc_server.ps_store

    async def streaming_pull(request_iterator, context):
        import grpc
        types = grpc_server._types()
        try:
            first = await request_iterator.__anext__()
        except (StopAsyncIteration, Exception):
            return
        subscription = first.subscription
        if not store.get_store().exists("subscriptions", subscription):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Subscription not found: {subscription}")
            return
        store.ensure_queue(subscription)
        if first.ack_ids:
            store.acknowledge(subscription, list(first.ack_ids))
        limit = first.max_outstanding_messages or _UNLIMITED
        sent: set[str] = set()  # ack ids this stream was given that may still be outstanding
        closed = asyncio.Event()

        async def read_acks_and_deadlines():
            try:
                async for request in request_iterator:
                    if request.ack_ids:
                        store.acknowledge(subscription, list(request.ack_ids))
                    for ack_id, seconds in zip(request.modify_deadline_ack_ids, request.modify_deadline_seconds):
                        store.modify_ack_deadline(subscription, [ack_id], int(seconds))
            except Exception:
                pass
            finally:
                closed.set()

        reader = asyncio.create_task(read_acks_and_deadlines())
        try:
            while not closed.is_set():
                # Outstanding: sent, not acked, and within its deadline (a nack sets the deadline to now).
                with store._lock:
                    unacked, now = store._unacked.get(subscription, {}), time.monotonic()
                    sent = {ack_id for ack_id in sent if ack_id in unacked and unacked[ack_id].ack_deadline >= now}
                room = limit - len(sent)
                pulled = store.pull(subscription, max_messages=room) if room > 0 else []
                if not pulled:
                    await asyncio.sleep(_POLL_SECONDS)
                    continue
                sent.update(ack_id for ack_id, _, _ in pulled)
                await context.write(types.StreamingPullResponse(received_messages=[
                    types.ReceivedMessage(ack_id=ack_id, delivery_attempt=attempt, message=types.PubsubMessage(
                        data=base64.b64decode(message["data"]) if message.get("data") else b"",
                        attributes=message.get("attributes", {}), message_id=message.get("messageId", ""),
                        ordering_key=message.get("orderingKey", "")))
                    for ack_id, message, attempt in pulled]))
        except Exception:
            pass  # the client went away
        finally:
            closed.set()
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass

    return streaming_pull
