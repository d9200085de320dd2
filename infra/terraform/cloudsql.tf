# The consumer's IAM database user in the existing Cloud SQL instance. It logs in with a
# short-lived token of the service account (DB_IAM_AUTH=true), never a password. Its
# privileges inside PostgreSQL are granted in SQL by a database administrator: see
# "Database user and grants" in infra/README.md.
resource "google_sql_user" "consumer" {
  count = var.create_iam_database_user ? 1 : 0

  project  = var.project_id
  instance = var.cloudsql_instance
  name     = local.db_iam_user
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"

  depends_on = [google_project_service.apis]
}
