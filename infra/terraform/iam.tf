# The consumer's identity and exactly the roles it needs, each on the one resource it is for.

resource "google_service_account" "consumer" {
  project      = var.project_id
  account_id   = var.service_account_id
  display_name = "IRT calibration consumer"
  description  = "Pulls calibration-requested, publishes calibration-completed, reads and writes the platform database as an IAM database user"
}

# Pull requests from the subscription (pubsub.subscriptions.consume).
resource "google_pubsub_subscription_iam_member" "consumer_pulls_requests" {
  project      = var.project_id
  subscription = google_pubsub_subscription.requests.name
  role         = "roles/pubsub.subscriber"
  member       = local.consumer_member
}

# Read the subscription itself: the consumer checks it at start and in /readyz
# (pubsub.subscriptions.get is in roles/pubsub.viewer, not in roles/pubsub.subscriber).
resource "google_pubsub_subscription_iam_member" "consumer_reads_subscription" {
  project      = var.project_id
  subscription = google_pubsub_subscription.requests.name
  role         = "roles/pubsub.viewer"
  member       = local.consumer_member
}

# Publish calibration-completed events.
resource "google_pubsub_topic_iam_member" "consumer_publishes_completed" {
  project = var.project_id
  topic   = google_pubsub_topic.completed.name
  role    = "roles/pubsub.publisher"
  member  = local.consumer_member
}

# Forward malformed requests to the dead-letter topic (MIRT_DEAD_LETTER_TOPIC).
resource "google_pubsub_topic_iam_member" "consumer_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.consumer_member
}

# Cloud SQL through the Cloud SQL Python Connector (cloudsql.instances.connect/get) and
# IAM database login (cloudsql.instances.login), both on this one instance only.
locals {
  cloudsql_instance_condition = "resource.name == 'projects/${var.project_id}/instances/${var.cloudsql_instance}' && resource.type == 'sqladmin.googleapis.com/Instance'"
}

resource "google_project_iam_member" "consumer_cloudsql_client" {
  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = local.consumer_member

  condition {
    title       = "irt-calibration-instance-only"
    description = "Only the platform's Cloud SQL instance"
    expression  = local.cloudsql_instance_condition
  }
}

resource "google_project_iam_member" "consumer_cloudsql_instance_user" {
  project = var.project_id
  role    = "roles/cloudsql.instanceUser"
  member  = local.consumer_member

  condition {
    title       = "irt-calibration-instance-only"
    description = "Only the platform's Cloud SQL instance"
    expression  = local.cloudsql_instance_condition
  }
}

# Workload Identity: the Kubernetes service account of infra/k8s acts as the Google one.
resource "google_service_account_iam_member" "consumer_workload_identity" {
  service_account_id = google_service_account.consumer.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.k8s_namespace}/${var.k8s_service_account}]"
}

# Dead-lettering is done by Pub/Sub's service agent: it publishes the undeliverable request
# to the dead-letter topic and acknowledges it on the source subscription.
resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_requests" {
  project      = var.project_id
  subscription = google_pubsub_subscription.requests.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# KEDA scales the consumer on the subscription's backlog (infra/k8s/scaledobject.yaml). Its
# operator reads pubsub.googleapis.com/subscription/num_undelivered_messages from Cloud
# Monitoring as a Google service account of its own, through Workload Identity; that account
# may read metrics and nothing else.
resource "google_service_account" "keda" {
  project      = var.project_id
  account_id   = "${var.service_account_id}-keda"
  display_name = "KEDA scaler of the IRT calibration consumer"
  description  = "Reads the calibration-requested subscription's backlog from Cloud Monitoring"
}

resource "google_project_iam_member" "keda_reads_metrics" {
  project = var.project_id
  role    = "roles/monitoring.viewer"
  member  = "serviceAccount:${google_service_account.keda.email}"
}

resource "google_service_account_iam_member" "keda_workload_identity" {
  service_account_id = google_service_account.keda.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.keda_service_account}]"
}
