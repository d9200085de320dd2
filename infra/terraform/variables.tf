# ---------------------------------------------------------------------------------------------
# Where
# ---------------------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project of the topics, the subscription, the scheduler job and the service account (GOOGLE_CLOUD_PROJECT of the consumer)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Scheduler job and the Artifact Registry repository."
  type        = string
  default     = "europe-west1"
}

variable "enable_apis" {
  description = "Enable the APIs this stack uses (Pub/Sub, Cloud Scheduler, Cloud SQL Admin, IAM, Artifact Registry)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Pub/Sub: names are the consumer's settings' defaults (tests/repository/test_infra.py keeps them equal)
# ---------------------------------------------------------------------------------------------

variable "requests_topic" {
  description = "Topic calibration requests are published to (MIRT_REQUESTS_TOPIC)."
  type        = string
  default     = "calibration-requested"
}

variable "requests_subscription" {
  description = "Subscription the consumer pulls requests from (MIRT_REQUESTS_SUBSCRIPTION)."
  type        = string
  default     = "calibration-requested-consumer"
}

variable "completed_topic" {
  description = "Topic calibration-completed events are published to (MIRT_COMPLETED_TOPIC)."
  type        = string
  default     = "calibration-completed"
}

variable "dead_letter_topic" {
  description = "Dead-letter topic: requests Pub/Sub gave up on after max_delivery_attempts, and malformed requests the consumer forwards (MIRT_DEAD_LETTER_TOPIC)."
  type        = string
  default     = "calibration-requested-dead-letter"
}

variable "dead_letter_subscription" {
  description = "Subscription on the dead-letter topic, so that dead letters are kept for inspection and replay."
  type        = string
  default     = "calibration-requested-dead-letter-inspect"
}

variable "ack_deadline_seconds" {
  description = "Ack deadline of the consumer's subscription. The client library extends the lease while a run goes on (up to MIRT_MAX_LEASE_SECONDS), so this only bounds how fast a request held by a dead replica is redelivered."
  type        = number
  default     = 60

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must lie in [10, 600]."
  }
}

variable "retry_minimum_backoff" {
  description = "Shortest wait before a nacked request is redelivered (exponential backoff starts here)."
  type        = string
  default     = "10s"
}

variable "retry_maximum_backoff" {
  description = "Longest wait between redeliveries of a nacked request (at most 600s)."
  type        = string
  default     = "600s"
}

variable "max_delivery_attempts" {
  description = "Deliveries of one request before Pub/Sub moves it to the dead-letter topic (5 to 100). Every nack counts (database down, run lock busy, a run abandoned at shutdown), and so does a lease lost with a replica killed mid-run (OOM)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must lie in [5, 100] (a Pub/Sub limit)."
  }
}

variable "enable_exactly_once_delivery" {
  description = "Exactly-once delivery on the consumer's subscription. Off by default: the consumer is idempotent by request id already (a request with a finished run is answered again, not run again)."
  type        = bool
  default     = false
}

variable "message_retention_duration" {
  description = "How long an unacked request is kept on the consumer's subscription (a weekly request older than a week is stale)."
  type        = string
  default     = "604800s"
}

# ---------------------------------------------------------------------------------------------
# The weekly request
# ---------------------------------------------------------------------------------------------

variable "schedule" {
  description = "Cron schedule of the weekly calibration request (unix-cron, in schedule_time_zone)."
  type        = string
  default     = "0 3 * * 1"
}

variable "schedule_time_zone" {
  description = "IANA time zone of the schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "schedule_paused" {
  description = "Create the scheduler job paused (nothing is published until it is resumed)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Identity and database
# ---------------------------------------------------------------------------------------------

variable "service_account_id" {
  description = "Account id of the consumer's Google service account."
  type        = string
  default     = "irt-calibration"
}

variable "cloudsql_instance" {
  description = "Name of the existing Cloud SQL for PostgreSQL instance holding the platform's database (the instance id, not the connection name). Its flag cloudsql.iam_authentication must be on."
  type        = string
}

variable "cloudsql_region" {
  description = "Region of the Cloud SQL instance (for INSTANCE_CONNECTION_NAME); defaults to var.region."
  type        = string
  default     = ""
}

variable "database_name" {
  description = "Database of the platform's attempt and question tables (DB_NAME)."
  type        = string
}

variable "db_ip_type" {
  description = "Which IP of the instance the Cloud SQL Python Connector uses (DB_IP_TYPE): private needs the cluster in the instance's VPC, public needs no authorized networks (the connector authenticates with IAM and TLS), psc for Private Service Connect."
  type        = string
  default     = "private"

  validation {
    condition     = contains(["public", "private", "psc"], var.db_ip_type)
    error_message = "db_ip_type must be public, private or psc."
  }
}

variable "create_iam_database_user" {
  description = "Create the consumer's IAM database user in the Cloud SQL instance (its grants are given in SQL: see infra/README.md)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Runtime (GKE)
# ---------------------------------------------------------------------------------------------

variable "k8s_namespace" {
  description = "Kubernetes namespace of the consumer (infra/k8s)."
  type        = string
  default     = "irt-calibration"
}

variable "k8s_service_account" {
  description = "Kubernetes service account of the consumer, bound to the Google service account by Workload Identity."
  type        = string
  default     = "irt-calibration"
}

variable "create_artifact_registry" {
  description = "Create a Docker repository in Artifact Registry for the image."
  type        = bool
  default     = true
}

variable "artifact_registry_repository" {
  description = "Artifact Registry repository id for the image."
  type        = string
  default     = "irt-calibration"
}

variable "image_tag" {
  description = "Tag of the image the Kubernetes overlay deploys (see the k8s_deploy_env output)."
  type        = string
  default     = "0.1.0"
}

variable "labels" {
  description = "Labels put on every resource that takes labels."
  type        = map(string)
  default = {
    app = "irt-calibration"
  }
}

# ---------------------------------------------------------------------------------------------
# Calibration scopes and scaling out

variable "scope_key" {
  description = "MIRT_SCOPE_KEY of the consumer: the question.meta key whose values are the scopes (item banks), each calibrated as its own scale; empty for one scale over the whole bank."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{0,100}$", var.scope_key))
    error_message = "scope_key is a question.meta key: letters, digits, _ or -, at most 100."
  }
}

variable "max_replicas" {
  description = "Most consumer replicas KEDA scales the Deployment to on the subscription's backlog (maxReplicaCount of infra/k8s/scaledobject.yaml): scopes are calibrated in parallel up to this many. Keep it no more than the scopes the bank has."
  type        = number
  default     = 4

  validation {
    condition     = var.max_replicas >= 1
    error_message = "max_replicas must be at least 1."
  }
}

variable "keda_service_account" {
  description = "namespace/name of KEDA's operator's Kubernetes service account, which reads the subscription's backlog from Cloud Monitoring through Workload Identity."
  type        = string
  default     = "keda/keda-operator"
}
