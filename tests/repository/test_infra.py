"""infra/, the Dockerfile and the lock agree with the service, and are well formed.

The names the deployment uses (topics, subscription, environment variables,
port, event type, the Kubernetes service account) are read from both sides,
the service's settings (``consumer.settings.SPECS``) and events
(``consumer.bus.events``) on one, the Terraform and Kubernetes files on the
other, so that any drift fails here. Every ``.tf`` file is parsed (python-hcl2)
and every YAML manifest (PyYAML); the Kubernetes objects are checked against
the Kubernetes schema (kubernetes-validate) and for what the service needs
(probes, grace period, non-root, resources, known settings only); the log
lines docs/operations.md's runbook quotes are the service's own. What cannot
be run here (docker build, terraform plan, a cluster) is listed in
infra/README.md.
"""

from __future__ import annotations

import ast
import base64
import json
import math
import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from functools import lru_cache
from pathlib import Path

import hcl2
import pytest
import yaml
from packaging.requirements import Requirement

from consumer import scope
from consumer.bus import events
from consumer.settings import SPECS, Settings, parse_setting

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TERRAFORM = INFRA / "terraform"
K8S = INFRA / "k8s"

ENV_OF = {spec.env: name for name, spec in SPECS.items()}
#: Variables the Deployment may set that are not the service's settings: read by libraries.
STANDARD_ENV = {
    "NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
    "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "GOOGLE_APPLICATION_CREDENTIALS",
}
STANDARD_ENV_PREFIXES = ("OTEL_",)
#: Settings that hold secrets: never in a manifest or a ConfigMap (IAM authentication needs none).
SECRET_ENV = {spec.env for spec in SPECS.values() if spec.secret}


def default(setting: str):
    return SPECS[setting].default


# --- Terraform ---------------------------------------------------------------------------------

def _plain(value):
    """python-hcl2's output without its markers: quotes off string literals, no __is_block__ keys.

    Expressions stay as ``${...}`` strings; a literal string comes back as the string itself.
    """
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@lru_cache(maxsize=None)
def terraform() -> dict:
    """Every block of every .tf file: {"resource": {type: {name: body}}, "variable": {...}, ...}."""
    merged: dict = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": {}, "provider": {}}
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert files, "no .tf files under infra/terraform"
    for path in files:
        with path.open() as handle:
            doc = _plain(hcl2.load(handle))
        for entry in doc.get("locals", []):
            merged["locals"].update(entry)
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    merged[kind].setdefault(rtype, {}).update(named)
        for kind in ("variable", "output", "provider"):
            for entry in doc.get(kind, []):
                merged[kind].update(entry)
    return merged


def resource(rtype: str, name: str) -> dict:
    found = terraform()["resource"].get(rtype, {})
    assert name in found, f"infra/terraform has no {rtype}.{name}"
    return found[name]


def variable_default(name: str):
    variables = terraform()["variable"]
    assert name in variables, f"infra/terraform has no variable {name!r}"
    return variables[name].get("default")


def block(body: dict, name: str) -> dict:
    value = body.get(name)
    assert isinstance(value, list) and len(value) == 1, f"expected one {name} block, got {value!r}"
    return value[0]


def heredoc_env(output: str) -> dict[str, str]:
    """KEY=value lines of a heredoc output, values as written (expressions unevaluated)."""
    text = terraform()["output"][output]["value"]
    match = re.fullmatch(r"<<-?(\w+)\n(.*)\n\s*\1", text, re.S)
    assert match, f"output {output} is not a heredoc"
    pairs = [line.strip().split("=", 1) for line in match[2].splitlines() if line.strip()]
    return {key: value for key, value in pairs}


def test_every_terraform_file_parses_and_declares_the_stack():
    tf = terraform()
    assert "google" in tf["provider"]
    for rtype, name in [("google_pubsub_topic", "requested"), ("google_pubsub_topic", "completed"),
                        ("google_pubsub_topic", "dead_letter"), ("google_pubsub_subscription", "requests"),
                        ("google_pubsub_subscription", "dead_letter"), ("google_cloud_scheduler_job", "weekly"),
                        ("google_service_account", "consumer"), ("google_sql_user", "consumer")]:
        resource(rtype, name)


def test_terraform_names_are_the_services_defaults():
    assert variable_default("requests_topic") == default("requests_topic")
    assert variable_default("requests_subscription") == default("requests_subscription")
    assert variable_default("completed_topic") == default("completed_topic")
    assert variable_default("dead_letter_topic"), "the dead-letter topic needs a name"
    assert variable_default("dead_letter_subscription") not in ("", None, variable_default("requests_subscription"))
    assert resource("google_pubsub_topic", "requested")["name"] == "${var.requests_topic}"
    assert resource("google_pubsub_topic", "completed")["name"] == "${var.completed_topic}"
    assert resource("google_pubsub_topic", "dead_letter")["name"] == "${var.dead_letter_topic}"
    assert resource("google_pubsub_subscription", "requests")["name"] == "${var.requests_subscription}"


def test_consumer_subscription_retries_with_backoff_then_dead_letters():
    sub = resource("google_pubsub_subscription", "requests")
    assert sub["topic"] == "${google_pubsub_topic.requested.id}"
    assert sub["ack_deadline_seconds"] == "${var.ack_deadline_seconds}"
    assert 10 <= variable_default("ack_deadline_seconds") <= 600
    # No ordering key may let one message hold back the others (see pubsub.tf).
    assert sub["enable_message_ordering"] is False
    assert sub["enable_exactly_once_delivery"] == "${var.enable_exactly_once_delivery}"
    assert terraform()["variable"]["enable_exactly_once_delivery"]["type"] == "${bool}" or \
        terraform()["variable"]["enable_exactly_once_delivery"]["type"] == "bool"
    retry = block(sub, "retry_policy")
    low, high = variable_default("retry_minimum_backoff"), variable_default("retry_maximum_backoff")
    assert retry == {"minimum_backoff": "${var.retry_minimum_backoff}", "maximum_backoff": "${var.retry_maximum_backoff}"}
    seconds = lambda text: float(re.fullmatch(r"(\d+(?:\.\d+)?)s", text)[1])  # noqa: E731
    assert 0 < seconds(low) < seconds(high) <= 600
    dead = block(sub, "dead_letter_policy")
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dead["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert 5 <= variable_default("max_delivery_attempts") <= 100
    assert block(sub, "expiration_policy")["ttl"] == "", "the subscription must never expire"
    inspect = resource("google_pubsub_subscription", "dead_letter")
    assert inspect["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert block(inspect, "expiration_policy")["ttl"] == ""


def test_scheduler_publishes_a_request_the_consumer_accepts_each_week():
    job = resource("google_cloud_scheduler_job", "weekly")
    assert job["schedule"] == "${var.schedule}" and job["time_zone"] == "${var.schedule_time_zone}"
    assert len(variable_default("schedule").split()) == 5
    target = block(job, "pubsub_target")
    assert target["topic_name"] == "${google_pubsub_topic.requested.id}"
    assert target["attributes"] == "${local.weekly_request_attributes}"
    assert target["data"] == "${base64encode(jsonencode(local.weekly_request_body))}"

    attributes = dict(terraform()["locals"]["weekly_request_attributes"])
    body = terraform()["locals"]["weekly_request_body"]
    assert attributes["ce-type"] == events.REQUESTED_TYPE
    assert attributes["ce-specversion"] == "1.0"
    assert attributes["content-type"] == "application/json"
    assert "request_id" not in body, "a fixed request_id would turn every later week into a duplicate"
    data = base64.b64decode(base64.b64encode(json.dumps(body).encode()))
    request = events.parse_request(data, attributes, "scheduler-message-1")
    assert request.request_id == "scheduler-message-1"
    assert request.requested_by == "cloud-scheduler"
    assert request.overrides == {} and not request.dry_run
    # Every scope: fanned out when the consumer has scopes, the whole bank (one run) when it has none.
    assert request.scope == scope.EVERY_SCOPE
    assert scope.fans_out("subject", request.scope) and not scope.fans_out("", request.scope)
    assert scope.resolve("", request.scope) == scope.WHOLE_BANK


def _iam_members() -> list[tuple[str, str, dict]]:
    found = []
    for rtype, named in terraform()["resource"].items():
        if rtype.endswith("_iam_member") or rtype.endswith("_iam_binding"):
            found += [(rtype, name, body) for name, body in named.items()]
    return found


def test_service_account_has_only_the_roles_it_needs():
    consumer = "${local.consumer_member}"
    agent = "${local.pubsub_service_agent}"
    granted = {(rtype, body.get("topic") or body.get("subscription") or body.get("project") or
                body.get("service_account_id"), body["role"], body["member"])
               for rtype, _, body in _iam_members()}
    expected = {
        ("google_pubsub_subscription_iam_member", "${google_pubsub_subscription.requests.name}",
         "roles/pubsub.subscriber", consumer),
        ("google_pubsub_subscription_iam_member", "${google_pubsub_subscription.requests.name}",
         "roles/pubsub.viewer", consumer),
        ("google_pubsub_topic_iam_member", "${google_pubsub_topic.completed.name}", "roles/pubsub.publisher", consumer),
        ("google_pubsub_topic_iam_member", "${google_pubsub_topic.dead_letter.name}", "roles/pubsub.publisher",
         consumer),
        ("google_project_iam_member", "${var.project_id}", "roles/cloudsql.client", consumer),
        ("google_project_iam_member", "${var.project_id}", "roles/cloudsql.instanceUser", consumer),
        ("google_pubsub_topic_iam_member", "${google_pubsub_topic.dead_letter.name}", "roles/pubsub.publisher", agent),
        ("google_pubsub_subscription_iam_member", "${google_pubsub_subscription.requests.name}",
         "roles/pubsub.subscriber", agent),
        ("google_service_account_iam_member", "${google_service_account.consumer.name}",
         "roles/iam.workloadIdentityUser",
         "serviceAccount:${var.project_id}.svc.id.goog[${var.k8s_namespace}/${var.k8s_service_account}]"),
        # KEDA's operator reads the backlog metric, and nothing else, as an account of its own.
        ("google_project_iam_member", "${var.project_id}", "roles/monitoring.viewer",
         "serviceAccount:${google_service_account.keda.email}"),
        ("google_service_account_iam_member", "${google_service_account.keda.name}",
         "roles/iam.workloadIdentityUser", "serviceAccount:${var.project_id}.svc.id.goog[${var.keda_service_account}]"),
    }
    assert granted == expected
    for rtype, name, body in _iam_members():
        assert not rtype.endswith("_iam_binding"), f"{name}: an authoritative binding would remove others' members"
        if rtype == "google_project_iam_member" and body["role"].startswith("roles/cloudsql."):
            # project-wide Cloud SQL roles are narrowed to the one instance
            assert block(body, "condition")["expression"] == "${local.cloudsql_instance_condition}", name
    condition = terraform()["locals"]["cloudsql_instance_condition"]
    assert "instances/${var.cloudsql_instance}" in condition and "sqladmin.googleapis.com/Instance" in condition
    assert terraform()["locals"]["consumer_member"] == "serviceAccount:${google_service_account.consumer.email}"
    assert "@gcp-sa-pubsub.iam.gserviceaccount.com" in terraform()["locals"]["pubsub_service_agent"]


def test_iam_database_user_is_the_service_account():
    user = resource("google_sql_user", "consumer")
    assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert user["name"] == "${local.db_iam_user}"
    assert terraform()["locals"]["db_iam_user"] == \
        '${trimsuffix(google_service_account.consumer.email, ".gserviceaccount.com")}'


def test_terraform_env_outputs_are_the_k8s_env_files():
    calibration = heredoc_env("k8s_calibration_env")
    assert calibration.keys() == read_env_file(K8S / "calibration.env").keys()
    assert calibration["DB_IAM_AUTH"] == "true"
    assert calibration["MIRT_REQUESTS_TOPIC"] == "${var.requests_topic}"
    assert calibration["MIRT_REQUESTS_SUBSCRIPTION"] == "${var.requests_subscription}"
    assert calibration["MIRT_COMPLETED_TOPIC"] == "${var.completed_topic}"
    assert calibration["MIRT_DEAD_LETTER_TOPIC"] == "${var.dead_letter_topic}"
    assert calibration["DB_IP_TYPE"] == "${var.db_ip_type}"
    assert calibration["DB_USER"] == "${local.db_iam_user}"
    assert calibration["MIRT_SCOPE_KEY"] == "${var.scope_key}"
    assert read_env_file(K8S / "calibration.env")["MIRT_SCOPE_KEY"] == variable_default("scope_key")
    for key in calibration:
        assert key in ENV_OF, f"k8s_calibration_env sets {key}, which is no setting of the service"
    assert heredoc_env("k8s_deploy_env").keys() == read_env_file(K8S / "deploy.env").keys()


def test_terraform_is_formatted():
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("no terraform binary here")
    result = subprocess.run([binary, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Kubernetes ----------------------------------------------------------------------------------

def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            assert key.strip() not in pairs, f"{path.name}: {key} twice"
            pairs[key.strip()] = value.strip()
    return pairs


@lru_cache(maxsize=None)
def manifests() -> dict[str, list[dict]]:
    found = {}
    for path in sorted(list(INFRA.rglob("*.yaml")) + list(INFRA.rglob("*.yml"))):
        with path.open() as handle:
            found[str(path.relative_to(INFRA))] = [doc for doc in yaml.safe_load_all(handle) if doc is not None]
    return found


def objects() -> list[dict]:
    return [doc for docs in manifests().values() for doc in docs if doc.get("kind") != "Kustomization"]


def one(kind: str, docs: list[dict] | None = None) -> dict:
    found = [doc for doc in (objects() if docs is None else docs) if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kustomization() -> dict:
    return manifests()["k8s/kustomization.yaml"][0]


@lru_cache(maxsize=None)
def rendered() -> list[dict] | None:
    """``kubectl kustomize infra/k8s`` when kubectl is here (it embeds kustomize), else None."""
    binary = shutil.which("kubectl")
    if binary is None:
        return None
    result = subprocess.run([binary, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def test_every_yaml_manifest_parses_into_kubernetes_objects():
    assert manifests(), "no YAML under infra/"
    for path, docs in manifests().items():
        assert docs, f"{path} is empty"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), f"{path}: not a Kubernetes object"
            if doc["kind"] != "Kustomization":
                assert doc.get("metadata", {}).get("name"), f"{path}: {doc['kind']} without a name"
    listed = set(kustomization()["resources"])
    on_disk = {path.removeprefix("k8s/") for path in manifests() if path.startswith("k8s/")} - {"kustomization.yaml"}
    assert listed == on_disk, "kustomization.yaml must list every manifest of infra/k8s"


#: Custom resources (KEDA's), which Kubernetes' own schema does not know: checked by their own test.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def test_manifests_match_the_kubernetes_schema():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = [doc for doc in objects() if doc["kind"] not in KEDA_KINDS]
    docs += [doc for doc in (rendered() or []) if doc["kind"] == "ConfigMap"]
    for version in ("1.30.0", kubernetes_validate.latest_version()):
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_keda_scales_the_consumer_on_its_subscriptions_backlog_one_request_per_replica():
    scaled = one("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == one("Deployment")["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 1
    max_replicas = int(read_env_file(K8S / "deploy.env")["MAX_REPLICAS"])
    assert scaled["spec"]["maxReplicaCount"] == max_replicas == variable_default("max_replicas")
    assert heredoc_env("k8s_deploy_env")["MAX_REPLICAS"] == "${var.max_replicas}"
    if rendered() is not None:  # the Terraform variable reaches the rendered ScaledObject, as a number
        assert one("ScaledObject", rendered())["spec"]["maxReplicaCount"] == max_replicas
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "gcp-pubsub"
    metadata = trigger["metadata"]
    assert metadata["subscriptionName"] == full_env()["MIRT_REQUESTS_SUBSCRIPTION"] == \
        variable_default("requests_subscription")
    # One replica per request waiting or running: the consumer's flow control admits one message at a time.
    assert metadata["mode"] == "SubscriptionSize" and metadata["value"] == "1"
    assert "max_messages=1" in (ROOT / "consumer" / "bus" / "subscriber.py").read_text()
    auth = one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"]["provider"] == "gcp", "Workload Identity, no key in a Secret"
    # Scaling in stops a replica that may be mid-run: not before a run has had time to finish.
    pod, _ = deployment()
    assert scaled["spec"]["cooldownPeriod"] >= pod["terminationGracePeriodSeconds"]
    assert scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"] >= 600


def deployment(docs: list[dict] | None = None) -> tuple[dict, dict]:
    dep = one("Deployment", docs)
    pod = dep["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert list(containers) == ["consumer"], "one container: the consumer"
    return pod, containers["consumer"]


def container_env(container: dict) -> dict[str, str]:
    env = {}
    for entry in container.get("env", []):
        assert "valueFrom" not in entry or entry["name"] not in SECRET_ENV
        assert entry["name"] not in env, f"{entry['name']} set twice"
        env[entry["name"]] = entry.get("value")
    return env


def full_env() -> dict[str, str]:
    """What the consumer container sees: calibration.env (the ConfigMap), then the Deployment's env."""
    _, container = deployment()
    refs = [ref["configMapRef"]["name"] for ref in container.get("envFrom", [])]
    generators = {g["name"]: g for g in kustomization()["configMapGenerator"]}
    env = {}
    for name in refs:
        assert name in generators, f"envFrom names ConfigMap {name}, which kustomization.yaml does not generate"
        for source in generators[name]["envs"]:
            env.update(read_env_file(K8S / source))
    env.update(container_env(container))
    return env


def test_every_variable_the_deployment_sets_is_a_known_setting_with_a_valid_value():
    env = full_env()
    for key, value in env.items():
        known = key in ENV_OF or key in STANDARD_ENV or key.startswith(STANDARD_ENV_PREFIXES)
        assert known, f"the Deployment sets {key}, which is neither a setting (consumer/settings.py) nor a " \
                      f"standard variable"
        assert key not in SECRET_ENV, f"{key} is a secret: it has no place in a manifest (use DB_IAM_AUTH)"
        if key in ENV_OF:
            parse_setting(ENV_OF[key], value, source=key)
    settings = Settings.load(env)  # the settings' own cross-checks (Cloud SQL needs user, database, auth)
    assert settings.db_iam_auth and settings.instance_connection_name and settings.project
    assert settings.requests_topic == variable_default("requests_topic")
    assert settings.requests_subscription == variable_default("requests_subscription")
    assert settings.completed_topic == variable_default("completed_topic")
    assert settings.dead_letter_topic == variable_default("dead_letter_topic")
    assert settings.db_ip_type == variable_default("db_ip_type")


def _port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    assert port in named, f"probe port {port!r} is not a named port of the container"
    return named[port]


def test_probes_watch_the_health_endpoints_on_port():
    env = full_env()
    _, container = deployment()
    port = int(env.get("PORT", default("health_port")))
    assert port == default("health_port") == dockerfile_exposed_port()
    assert [p["containerPort"] for p in container["ports"]] == [port]
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert probe in container, f"no {probe}"
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{probe} must ask {path}"
        assert _port(container, get["port"]) == port, f"{probe} must ask PORT {port}"
    # /readyz checks the database and the subscription, 5 s each at most.
    assert container["readinessProbe"]["timeoutSeconds"] > 10


def test_termination_grace_outlasts_the_consumers_drain():
    pod, container = deployment()
    grace = int(container_env(container).get("MIRT_SHUTDOWN_GRACE_SECONDS", default("shutdown_grace_seconds")))
    assert pod["terminationGracePeriodSeconds"] > grace
    assert pod["terminationGracePeriodSeconds"] >= grace + 10, "leave the process time to ack and flush"


def _restricted(context: dict, pod_context: dict, where: str) -> None:
    """The "restricted" Pod Security Standard, as the namespace enforces it."""
    merged = {**pod_context, **context}
    assert merged.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
    assert merged.get("runAsUser", 1) != 0, f"{where}: runs as root"
    assert context.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
    assert context.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities not all dropped"
    assert context.get("readOnlyRootFilesystem") is True, f"{where}: writable root filesystem"
    seccomp = merged.get("seccompProfile", {}).get("type")
    assert seccomp in ("RuntimeDefault", "Localhost"), f"{where}: seccompProfile"


def test_pod_runs_unprivileged_with_a_read_only_root():
    pod, container = deployment()
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    for each in pod["containers"] + pod.get("initContainers", []):
        _restricted(each.get("securityContext", {}), pod["securityContext"], each["name"])
    namespace = one("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # Writable places: numba's cache and /tmp, nothing else.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    cache_dir = full_env()["NUMBA_CACHE_DIR"]
    assert cache_dir == dockerfile_env()["NUMBA_CACHE_DIR"]
    assert set(mounts) == {cache_dir, "/tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all("emptyDir" in volumes[name] for name in mounts.values())
    # The init container fills the cache volume from the image's compiled kernels.
    init = {c["name"]: c for c in pod["initContainers"]}["numba-cache"]
    (target,) = [m["mountPath"] for m in init["volumeMounts"] if m["name"] == mounts[cache_dir]]
    assert init["command"][:2] == ["cp", "-a"] and init["command"][2].rstrip("/.") == cache_dir
    assert init["command"][3].rstrip("/") == target.rstrip("/")
    assert init["image"] == container["image"]


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(text) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G)?", str(text))
    assert match, f"not a quantity: {text!r}"
    number, unit = float(match[1]), match[2]
    return number / 1000 if unit == "m" else number * _UNITS.get(unit, 1)


def memory_needed(max_obs: int) -> float:
    """Sizing rule of infra/README.md: ~0.5 GiB of base and compiled kernels, plus ~200 bytes a response.

    The benchmarks' whole runs peak at ~0.25 GB for 500k responses, 0.4-1 GB for 3M and
    3-4 GB for 20M: this rule stays above all three.
    """
    return 0.5 * 2**30 + 200 * max_obs


def test_resources_are_set_and_fit_max_obs():
    pod, container = deployment()
    env = full_env()
    for each in pod["containers"] + pod.get("initContainers", []):
        resources = each.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{each['name']}: {kind} incomplete"
    resources = container["resources"]
    memory_limit = quantity(resources["limits"]["memory"])
    assert quantity(resources["requests"]["memory"]) == memory_limit, \
        "memory request = limit: a run is never OOM-killed for memory the node gave to another pod"
    max_obs = int(env.get("MIRT_MAX_OBS", default("max_obs")))
    assert memory_limit >= memory_needed(max_obs), \
        f"MIRT_MAX_OBS={max_obs} needs about {memory_needed(max_obs) / 2**30:.1f} GiB (infra/README.md, Sizing)"
    assert memory_limit <= 4 * memory_needed(max_obs), "memory far above what MIRT_MAX_OBS can use"
    cpus = quantity(resources["limits"]["cpu"])
    for threads in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert threads in env, f"{threads} unset: the library would start a thread per core of the node"
        assert int(env[threads]) <= math.ceil(cpus)


def test_workload_identity_ties_the_k8s_and_google_service_accounts():
    pod, _ = deployment()
    account = one("ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"] == variable_default("k8s_service_account")
    assert kustomization()["namespace"] == one("Namespace")["metadata"]["name"] == variable_default("k8s_namespace")
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]


def test_kustomize_renders_the_image_and_the_identity():
    docs = rendered()
    if docs is None:
        pytest.skip("no kubectl here to run kustomize")
    deploy_env = read_env_file(K8S / "deploy.env")
    pod, container = deployment(docs)
    assert {c["image"] for c in pod["containers"] + pod["initContainers"]} == {deploy_env["IMAGE"]}
    account = one("ServiceAccount", docs)
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == deploy_env["GCP_SERVICE_ACCOUNT"]
    configmaps = [doc for doc in docs if doc["kind"] == "ConfigMap"]
    assert len(configmaps) == 1, "deploy.env must not reach the cluster"
    assert container["envFrom"] == [{"configMapRef": {"name": configmaps[0]["metadata"]["name"]}}]
    assert configmaps[0]["data"] == read_env_file(K8S / "calibration.env")
    assert all(doc["metadata"].get("namespace") == variable_default("k8s_namespace")
               for doc in docs if doc["kind"] != "Namespace")


# --- Dockerfile, .dockerignore and the locks ---------------------------------------------------------

@lru_cache(maxsize=None)
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in dockerfile():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def dockerfile_env() -> dict[str, str]:
    env = {}
    for word, rest in stages()[-1]:
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def dockerfile_exposed_port() -> int:
    (port,) = [rest for word, rest in stages()[-1] if word == "EXPOSE"]
    return int(port.split("/")[0])


def dockerfile_uid() -> int:
    args = dict(re.findall(r"(\w+)=(\S+)", " ".join(rest for word, rest in stages()[-1] if word == "ARG")))
    (user,) = [rest for word, rest in stages()[-1] if word == "USER"]
    uid = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], user).split(":")[0]
    return int(uid)


def test_dockerfile_builds_in_two_stages_from_slim_python_311():
    base = dict(re.findall(r"(\w+)=(\S+)", " ".join(rest for word, rest in dockerfile() if word == "ARG")))
    froms = [rest for word, rest in dockerfile() if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: build, then runtime"
    for line in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: base[m[1]], line.split()[0])
        assert re.match(r"python:3\.11(\.\d+)?-slim", image), image


def test_dockerfile_runtime_stage_is_minimal_and_unprivileged():
    runtime = stages()[-1]
    text = " ".join(rest for _, rest in runtime)
    assert not re.search(r"\b(apt-get|apk) +install", text), "no packages (compilers) in the runtime stage"
    assert "pip uninstall" in text, "no package installer left in the final image"
    copies_from_build = [rest for word, rest in runtime if word == "COPY" and rest.startswith("--from=")]
    assert copies_from_build == ["--from=build /opt/venv /opt/venv"], "only the built environment comes across"
    assert dockerfile_uid() != 0
    assert [rest for word, rest in runtime if word == "ENTRYPOINT"] == ['["python", "-m", "consumer"]']
    assert [rest for word, rest in runtime if word == "CMD"] == ['["serve"]']
    assert dockerfile_exposed_port() == default("health_port")
    runs = [rest for word, rest in runtime if word == "RUN"]
    assert any("selfcheck.py" in run for run in runs) and any("warm_numba.py" in run for run in runs)
    assert dockerfile_env()["NUMBA_CACHE_DIR"]


def test_dockerfile_installs_exactly_the_lock():
    build = " ".join(rest for word, rest in stages()[0])
    assert "--require-hashes" in build and "-r /tmp/requirements.lock" in build
    assert "--only-binary=:all:" in build, "wheels only: nothing compiled, no compiler needed"
    assert re.search(r"install --no-deps --no-index /tmp/dist/\*\.whl", build), "the project itself: no re-resolve"


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out (Docker's rule: the last matching pattern wins)."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.startswith("**/"):
            hit = any(fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch(prefix, pattern) and prefix.count("/") == pattern.count("/") for prefix in prefixes)
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_sends_what_the_dockerfile_copies_and_nothing_else():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    sources = []
    for word, rest in dockerfile():
        if word == "COPY" and not rest.startswith("--from="):
            sources += rest.split()[:-1]
    assert sources
    for source in sources:
        files = [path for path in tracked if path == source or path.startswith(source.rstrip("/") + "/")]
        assert files, f"COPY {source}: nothing tracked there"
        for path in files:
            assert not _docker_ignored(path, patterns), f"{path} is needed by COPY {source} but .dockerignore drops it"
    for path in tracked:
        if path.startswith(("tests/", "benchmarks/", ".ci/", "infra/terraform/", "infra/k8s/")):
            assert _docker_ignored(path, patterns), f"{path} would be sent to the image build"
    assert _docker_ignored("consumer/irt/__pycache__/kernels.cpython-311.pyc", patterns)


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, hashes)} of a pip-compile --generate-hashes lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)\s*$", line)
        assert match, f"{path.name}: not a hash-pinned line: {line[:80]}"
        name = re.sub(r"[-_.]+", "-", match[1]).lower()
        pins[name] = (match[2], re.findall(r"sha256:([0-9a-f]{64})", match[3]))
    return pins


def _pyproject() -> dict:
    import tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_lock_pins_every_runtime_dependency_with_hashes():
    pins = read_lock(ROOT / "requirements.lock")
    for text in _pyproject()["project"]["dependencies"]:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is a dependency in pyproject.toml but not in requirements.lock " \
                             f"(run infra/docker/update-locks.sh)"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"requirements.lock pins {name}=={version}, outside pyproject's {requirement.specifier} " \
            f"(run infra/docker/update-locks.sh)"
        assert hashes


def test_build_lock_pins_the_build_backend():
    pins = read_lock(INFRA / "docker" / "build-requirements.lock")
    for text in _pyproject()["build-system"]["requires"]:
        requirement = Requirement(text)
        name = requirement.name.lower()
        assert name in pins and requirement.specifier.contains(pins[name][0]), f"build lock lacks {text}"


def _run_image_script(name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    return subprocess.run([sys.executable, str(INFRA / "docker" / name)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


def test_image_selfcheck_passes_on_the_package(tmp_path):
    result = _run_image_script("selfcheck.py", tmp_path)
    assert result.returncode == 0, result.stderr


def test_numba_warmup_of_the_image_build_compiles_the_kernels(tmp_path):
    result = _run_image_script("warm_numba.py", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "kernels cached" in result.stderr
    assert any((tmp_path / "numba").rglob("*.nbi")), "no numba index written to NUMBA_CACHE_DIR"


# --- the runbook ---------------------------------------------------------------------------------------

def _source_literals() -> list[str]:
    """Every string literal of consumer/ and infra/docker/, f-strings with their fields as \\x00."""
    found = []
    for path in [*(ROOT / "consumer").rglob("*.py"), *(INFRA / "docker").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                found.append("".join(part.value if isinstance(part, ast.Constant) else "\x00"
                                     for part in node.values))
    return found


def _quoted_in(literal: str, pieces: list[str]) -> bool:
    at = 0
    for piece in pieces:
        at = literal.find(piece, at)
        if at < 0:
            return False
        at += len(piece)
    return True


#: The one runbook (infra/README.md links to it), and the heading its table sits under.
RUNBOOKS = {"docs/operations.md": (ROOT / "docs" / "operations.md", "\n## Runbook")}


def runbook_quotes(runbook: str = "docs/operations.md") -> list[str]:
    """The log lines a runbook quotes: code spans in the second column of its table."""
    path, heading = RUNBOOKS[runbook]
    text = path.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    quotes = []
    for row in section.splitlines():
        cells = row.split(" | ")
        if row.startswith("|") and len(cells) >= 4 and not set(row) <= set("|- "):
            quotes += re.findall(r"`([^`]+)`", cells[1])
    return quotes


@pytest.mark.parametrize("runbook", sorted(RUNBOOKS))
def test_runbook_quotes_the_services_own_log_lines(runbook):
    quotes = runbook_quotes(runbook)
    assert len(quotes) >= 8, "the runbook should quote the log line of each failure"
    literals = _source_literals()
    for quote in quotes:
        pieces = [piece.strip() for piece in quote.split("…") if piece.strip()]
        assert any(_quoted_in(literal, pieces) for literal in literals), \
            f"the runbook quotes {quote!r}, which no log message of consumer/ says (any more)"


def test_the_local_topology_is_infras():
    """serve --demo's topics and subscriptions (consumer/bus/topology.py) are those infra/ creates, with its settings."""
    from consumer.bus import topology
    seconds = lambda text: int(re.fullmatch(r"(\d+)s", text)[1])  # noqa: E731
    assert topology.REQUESTS_TOPIC == variable_default("requests_topic")
    assert topology.REQUESTS_SUBSCRIPTION == variable_default("requests_subscription")
    assert topology.COMPLETED_TOPIC == variable_default("completed_topic")
    assert topology.DEAD_LETTER_TOPIC == variable_default("dead_letter_topic")
    assert topology.DEAD_LETTER_SUBSCRIPTION == variable_default("dead_letter_subscription")
    assert topology.Policy() == topology.Policy(
        ack_deadline_seconds=variable_default("ack_deadline_seconds"),
        minimum_backoff_seconds=seconds(variable_default("retry_minimum_backoff")),
        maximum_backoff_seconds=seconds(variable_default("retry_maximum_backoff")),
        max_delivery_attempts=variable_default("max_delivery_attempts"))
