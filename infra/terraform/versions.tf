terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 7.0"
    }
  }

  # State: keep it in a GCS bucket for anything shared, e.g.
  #   terraform init -backend-config="bucket=my-tf-state" -backend-config="prefix=irt-calibration"
  # after uncommenting:
  # backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
