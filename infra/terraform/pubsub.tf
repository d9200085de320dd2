# Topics and subscriptions of the calibration service. Names default to the consumer's own
# defaults (consumer/settings.py); tests/repository/test_infra.py fails when the two drift apart.

resource "google_pubsub_topic" "requested" {
  project = var.project_id
  name    = var.requests_topic
  labels  = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "completed" {
  project = var.project_id
  name    = var.completed_topic
  labels  = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  project = var.project_id
  name    = var.dead_letter_topic
  labels  = var.labels

  # Dead letters stay on the topic for 31 days, so a subscription created later (or seeked
  # back) can still replay them after the inspect subscription's 7 days are over.
  message_retention_duration = "2678400s"

  depends_on = [google_project_service.apis]
}

# The consumer's subscription: one request at a time per replica (flow control in the client),
# leases extended while a run goes on, nacked requests redelivered with exponential backoff,
# and a request that keeps failing moved to the dead-letter topic instead of looping forever.
resource "google_pubsub_subscription" "requests" {
  project = var.project_id
  name    = var.requests_subscription
  topic   = google_pubsub_topic.requested.id
  labels  = var.labels

  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration
  retain_acked_messages      = false

  # No message ordering: requests do not depend on each other's order (each run calibrates
  # what the database holds when it runs, and duplicates are caught by request id), while an
  # ordering key would let one poison message, or one long run, hold back every later request.
  enable_message_ordering      = false
  enable_exactly_once_delivery = var.enable_exactly_once_delivery

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # A weekly consumer must never lose its subscription to the 31-day inactivity expiry.
  expiration_policy {
    ttl = ""
  }
}

# Dead letters wait here for a person: inspect them, fix the cause, republish (infra/README.md).
resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = var.dead_letter_subscription
  topic   = google_pubsub_topic.dead_letter.id
  labels  = var.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}
