# The weekly calibration request, published by Cloud Scheduler to the requests topic.
#
# The message is a CloudEvent in binary mode, as consumer/bus/events.py parses it: the
# context in attributes, the data in the body. Cloud Scheduler cannot generate a fresh
# ce-id or ce-time per run, so the message carries neither (both are optional to the
# consumer), and no request_id either: the Pub/Sub message id then serves as the request
# id, a new one every week. A fixed request_id here would make every week after the first
# a duplicate of the first, answered without running.
locals {
  weekly_request_attributes = {
    "ce-specversion" = "1.0"
    "ce-type"        = "com.exam-prep.calibration.requested.v1"
    "ce-source"      = "//cloudscheduler.googleapis.com/projects/${var.project_id}/locations/${var.region}/jobs/irt-calibration-weekly"
    "content-type"   = "application/json"
  }

  # The weekly defaults: no overrides, so the consumer's MIRT_* settings apply, and every
  # scope: the consumer fans the request out to one request per scope present in the bank
  # (with MIRT_SCOPE_KEY unset, "*" is the whole bank, one run).
  weekly_request_body = {
    requested_by = "cloud-scheduler"
    scope        = "*"
  }
}

resource "google_cloud_scheduler_job" "weekly" {
  project     = var.project_id
  region      = var.region
  name        = "irt-calibration-weekly"
  description = "Weekly IRT calibration request (calibration-requested, CloudEvents ${local.weekly_request_attributes["ce-type"]})"
  schedule    = var.schedule
  time_zone   = var.schedule_time_zone
  paused      = var.schedule_paused

  # Retries of the publish itself; the run's own retries are the subscription's.
  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
  }

  pubsub_target {
    topic_name = google_pubsub_topic.requested.id
    data       = base64encode(jsonencode(local.weekly_request_body))
    attributes = local.weekly_request_attributes
  }

  depends_on = [google_project_service.apis]
}
