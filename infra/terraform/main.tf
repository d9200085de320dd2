data "google_project" "this" {
  project_id = var.project_id
}

locals {
  consumer_member = "serviceAccount:${google_service_account.consumer.email}"

  # Pub/Sub's own service agent forwards undeliverable requests to the dead-letter topic.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  cloudsql_region          = var.cloudsql_region != "" ? var.cloudsql_region : var.region
  instance_connection_name = "${var.project_id}:${local.cloudsql_region}:${var.cloudsql_instance}"

  # A PostgreSQL IAM user for a service account is its email without ".gserviceaccount.com".
  db_iam_user = trimsuffix(google_service_account.consumer.email, ".gserviceaccount.com")

  image = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_registry_repository}/irt-calibration:${var.image_tag}"

  apis = [
    "artifactregistry.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "sqladmin.googleapis.com",
  ]
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "images" {
  count = var.create_artifact_registry ? 1 : 0

  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_registry_repository
  format        = "DOCKER"
  description   = "Images of the IRT calibration consumer"
  labels        = var.labels

  depends_on = [google_project_service.apis]
}
