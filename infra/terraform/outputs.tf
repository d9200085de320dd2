output "service_account_email" {
  description = "The consumer's Google service account."
  value       = google_service_account.consumer.email
}

output "db_iam_user" {
  description = "The consumer's PostgreSQL user (DB_USER): grant it its privileges in SQL (infra/README.md)."
  value       = local.db_iam_user
}

output "instance_connection_name" {
  description = "INSTANCE_CONNECTION_NAME of the Cloud SQL instance."
  value       = local.instance_connection_name
}

output "image" {
  description = "Where to push the image, and what infra/k8s deploys."
  value       = local.image
}

output "scheduler_job" {
  description = "The Cloud Scheduler job publishing the weekly request (gcloud scheduler jobs run it to request a run now)."
  value       = google_cloud_scheduler_job.weekly.id
}

output "dead_letter_subscription" {
  description = "Where requests that could not be handled wait for a person."
  value       = google_pubsub_subscription.dead_letter.id
}

# The consumer's settings for infra/k8s: terraform output -raw k8s_calibration_env > ../k8s/calibration.env
output "k8s_calibration_env" {
  description = "Contents of infra/k8s/calibration.env (the consumer's site settings)."
  value       = <<-EOT
    GOOGLE_CLOUD_PROJECT=${var.project_id}
    INSTANCE_CONNECTION_NAME=${local.instance_connection_name}
    DB_USER=${local.db_iam_user}
    DB_NAME=${var.database_name}
    DB_IAM_AUTH=true
    DB_IP_TYPE=${var.db_ip_type}
    MIRT_REQUESTS_TOPIC=${var.requests_topic}
    MIRT_REQUESTS_SUBSCRIPTION=${var.requests_subscription}
    MIRT_COMPLETED_TOPIC=${var.completed_topic}
    MIRT_DEAD_LETTER_TOPIC=${var.dead_letter_topic}
    MIRT_SCOPE_KEY=${var.scope_key}
  EOT
}

# Image and identity for infra/k8s: terraform output -raw k8s_deploy_env > ../k8s/deploy.env
output "k8s_deploy_env" {
  description = "Contents of infra/k8s/deploy.env (image and Workload Identity binding of the Deployment)."
  value       = <<-EOT
    IMAGE=${local.image}
    GCP_SERVICE_ACCOUNT=${google_service_account.consumer.email}
    MAX_REPLICAS=${var.max_replicas}
  EOT
}

# For installing KEDA: helm install keda kedacore/keda --namespace keda \
#   --set podIdentity.gcp.enabled=true --set podIdentity.gcp.gcpIAMServiceAccount=<this>
output "keda_service_account" {
  description = "Google service account KEDA's operator reads the subscription's backlog as (Workload Identity)."
  value       = google_service_account.keda.email
}
