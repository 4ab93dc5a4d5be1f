"""The install on the real control plane, both variants (cluster-wide, one namespace):

- `kubectl apply -k` passes the API server's own validation (server-side dry run,
  strict field validation), then applies for real;
- the operator, run locally with the manifests' ServiceAccount identity (a token from
  the TokenRequest API) and the manifests' arguments, reconciles the sample pipeline
  to Ready: the RBAC is enough;
- the same identity is denied what it does not need (Secrets; Deployments outside its
  namespace in the namespaced variant), by `kubectl auth can-i` and by real requests;
- Pod Security "restricted" admits the operator's pod and the pipeline's four.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid

import dockerparse
import pytest
import yaml
from installhelpers import (
    CRD_FILE,
    OPERATOR_NS,
    ROOT,
    SA_NAME,
    SA_USER,
    VARIANTS,
    Variant,
    api_request,
    audit_events,
    kubectl_argv,
    kustomize,
    one,
    readme_commands,
    token_kubeconfig,
    wait_for,
)
from localinfra.kube import free_port
from localinfra.operatorproc import OperatorProcess
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.kube

SAMPLE_NS = "tspipe-pipelines"
SAMPLE = "timestamps"
COMPONENTS = ("time", "router", "evenlogger", "oddlogger")
# Any host:port will do: the operator renders it into the apps, it never dials it.
BROKERS = ["127.0.0.1:19092"]
# 403 as a status code, not the milliseconds of a log timestamp like "23:18:01,403".
DENIAL = re.compile(r"forbidden|cannot|(?<![\d,.])\b403\b|not enough permissions", re.I)

README = ROOT / "manifests" / "README.md"


def run_readme(control_plane, words: list[str]) -> subprocess.CompletedProcess:
    assert words[0] == "kubectl", words
    return subprocess.run(
        [*kubectl_argv(), "--kubeconfig", control_plane.kubeconfig, *words[1:]],
        capture_output=True,
        text=True,
        timeout=360,
    )


@pytest.fixture(scope="module", params=VARIANTS, ids=str)
def variant(request) -> Variant:
    return request.param


@pytest.fixture(scope="module")
def install(control_plane, variant):
    """CRD, then the variant: server-side dry run first (strict), then for real."""
    kc = control_plane.kubectl
    kc("apply", "-f", str(CRD_FILE))
    control_plane.wait_crd_established("timestamppipelines.tspipe.io")
    objs = kustomize(variant.path)
    # Every object goes through admission and validation without being stored. A dry
    # run cannot create the namespaces the others go into, so those come first.
    for ns in (o for o in objs if o["kind"] == "Namespace"):
        assert kc("get", "namespace", ns["metadata"]["name"], check=False).returncode != 0, (
            f"namespace {ns['metadata']['name']} left over from an earlier run"
        )
    kc("apply", "-f", "-", "--validate=strict", input=yaml.safe_dump_all([o for o in objs if o["kind"] == "Namespace"]))
    dry = kc("apply", "-k", str(variant.path), "--dry-run=server", "--validate=strict", "-o", "name")
    stored_before = kc(
        "get",
        "clusterrolebindings,rolebindings,deployments,timestamppipelines",
        "-A",
        "-l",
        "app.kubernetes.io/part-of=tspipe",
        "-o",
        "name",
    ).stdout
    real = kc("apply", "-k", str(variant.path), "--validate=strict")
    yield {"objs": objs, "dry_run": dry.stdout, "real": real.stdout, "stored_after_dry_run": stored_before}
    # Uninstall as manifests/README.md says (kubectl delete waits for the namespaces to
    # go), except: pipelines of this install only (other tests share the API server),
    # and the CRD stays (other tests use it).
    for command in readme_commands(README, "### Uninstall"):
        if "crds/" in command:
            continue
        words = [
            w2
            for w in command
            for w2 in (["-n", SAMPLE_NS] if w == "-A" else [str(variant.path)] if w == "manifests/" else [w])
        ]
        proc = run_readme(control_plane, words)
        assert proc.returncode == 0, (words, proc.stderr)
    assert kc("get", "namespace", OPERATOR_NS, check=False).returncode != 0


def test_apply_passes_server_side_validation(install, variant):
    objs = install["objs"]
    named = sorted(f"{o['kind'].lower()}/{o['metadata']['name']}" for o in objs)
    dry = sorted(
        line.split(".", 1)[0] + "/" + line.split("/", 1)[1] if "." in line.split("/", 1)[0] else line
        for line in install["dry_run"].split()
    )
    assert dry == named, "every object went through the dry run"
    # Nothing but the namespaces existed after it: a dry run stores nothing.
    assert "rolebinding" not in install["stored_after_dry_run"]
    assert "deployment" not in install["stored_after_dry_run"]
    assert install["real"].count("\n") == len(objs)


@pytest.fixture(scope="module")
def operator_token(control_plane, install):
    tok = control_plane.kubectl("create", "token", SA_NAME, "-n", OPERATOR_NS, "--duration=3600s").stdout.strip()
    assert tok.count(".") == 2, "a JWT"
    return tok


@pytest.fixture(scope="module")
def operator_kubeconfig(kubeconfig, operator_token, tmp_path_factory):
    return token_kubeconfig(kubeconfig, operator_token, tmp_path_factory.mktemp("sa") / "operator.kubeconfig")


def as_operator(kubeconfig_path, *args, input=None):  # noqa: A002 - subprocess.run's name
    """kubectl with the operator's token (not the admin's credentials)."""
    return subprocess.run(
        [*kubectl_argv(), "--kubeconfig", kubeconfig_path, *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )


@pytest.fixture(scope="module")
def reconciled(control_plane, install, operator_kubeconfig, tmp_path_factory):
    """The operator as the image runs it (Dockerfile ENTRYPOINT + the Deployment's
    args), with the ServiceAccount's token, until the sample pipeline is Ready."""
    kc = control_plane.kubectl
    kc(
        "-n",
        SAMPLE_NS,
        "patch",
        "timestamppipeline",
        SAMPLE,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"kafka": {"brokers": BROKERS}}}),
    )
    d = one(install["objs"], "Deployment", "tspipe-operator")
    (c,) = d["spec"]["template"]["spec"]["containers"]
    health_port, metrics_port = free_port(), free_port()
    args = [
        re.sub(r"^--liveness=http://0\.0\.0\.0:8080/", f"--liveness=http://127.0.0.1:{health_port}/", a)
        for a in c["args"]
    ]
    assert args != c["args"], "the manifests' liveness argument was found and moved to loopback"
    # The metrics server too (0.0.0.0:8081 in the pod): a free port on loopback here.
    moved = [re.sub(r"^--metrics-port=8081$", f"--metrics-port={metrics_port}", a) for a in args]
    assert moved != args, "the manifests' --metrics-port=8081 was found"
    args = [*moved, "--metrics-address=127.0.0.1"]
    entry = dockerparse.parse((ROOT / "Dockerfile.operator").read_text()).final.last("ENTRYPOINT").exec_form()
    argv = [os.path.join(sys.prefix, "bin", entry[0]), *entry[1:], *args]
    home = tmp_path_factory.mktemp("operator-home")
    env = {
        "PATH": os.path.join(sys.prefix, "bin") + ":/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "PYTHONUNBUFFERED": "1",
        "KUBECONFIG": operator_kubeconfig,
    }
    audit_from = os.path.getsize(control_plane.audit_log)
    op = OperatorProcess(argv, home / "operator.log", env=env, cwd=home).start()
    try:

        def ready():
            assert op.alive(), f"operator exited:\n{op.log()[-3000:]}"
            obj = json.loads(kc("-n", SAMPLE_NS, "get", "timestamppipeline", SAMPLE, "-o", "json").stdout)
            conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
            return obj if conds.get("Ready", {}).get("status") == "True" else None

        pipeline = wait_for(ready, 240, "sample pipeline Ready=True")
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=10) as resp:
            health = resp.status
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        yield {"op": op, "pipeline": pipeline, "audit_from": audit_from, "health": health, "metrics": metrics}
    finally:
        op.stop()
        sys.stderr.write(f"\n--- operator log tail ---\n{op.log()[-3000:]}\n")


def test_operator_with_the_service_account_reconciles_the_sample_to_ready(control_plane, reconciled, variant):
    pipeline = reconciled["pipeline"]
    assert pipeline["status"]["phase"] == "Running"
    assert reconciled["health"] == 200, "kopf's liveness endpoint (the manifests' probe) answers"
    # The metrics server the manifests turn on (manifests/monitoring scrapes it) answers.
    phases = [
        (s.labels, s.value)
        for fam in text_string_to_metric_families(reconciled["metrics"])
        for s in fam.samples
        if s.name == "tspipe_pipeline_phase"
    ]
    assert ({"namespace": SAMPLE_NS, "pipeline": SAMPLE, "phase": "Running"}, 1.0) in phases, phases
    deps = json.loads(control_plane.kubectl("-n", SAMPLE_NS, "get", "deployments", "-o", "json").stdout)["items"]
    owned = {
        d["metadata"]["name"]
        for d in deps
        if any(r.get("uid") == pipeline["metadata"]["uid"] for r in d["metadata"].get("ownerReferences", []))
    }
    assert owned == {f"{SAMPLE}-{c}" for c in COMPONENTS}
    for d in deps:
        if d["metadata"]["name"] in owned:
            args = d["spec"]["template"]["spec"]["containers"][0]["args"]
            assert f"--spring.cloud.stream.kafka.binder.brokers={BROKERS[0]}" in args

    # It was the ServiceAccount that wrote them, and none of its requests was refused.
    mine = [
        ev
        for ev in audit_events(control_plane.audit_log, reconciled["audit_from"])
        if ev["user"]["username"] == SA_USER
    ]
    writes = {
        (ev["verb"], ev.get("objectRef", {}).get("resource"), ev.get("objectRef", {}).get("subresource"))
        for ev in mine
        if ev["responseStatus"]["code"] < 400
    }
    assert ("create", "deployments", None) in writes
    assert ("patch", "timestamppipelines", "status") in writes
    assert ("create", "events", None) in writes
    in_scope = {SAMPLE_NS, None}
    refused = [
        f"{ev['verb']} {ev['requestURI']}: {ev['responseStatus']['code']}"
        for ev in mine
        if ev["responseStatus"]["code"] >= 400 and ev.get("objectRef", {}).get("namespace") in in_scope
    ]
    assert not refused, refused
    # Reads are not in the audit log; kopf and the controller log every refusal.
    # (A 403 for a namespace being deleted, which other tests may leave behind for a
    # cluster-wide operator, is admission refusing new content there, not RBAC.)
    denials = [
        ln
        for ln in reconciled["op"].log().splitlines()
        if DENIAL.search(ln) and "because it is being terminated" not in ln
    ]
    assert not denials, denials


def test_service_account_can_also_update_and_delete_what_it_owns(control_plane, reconciled):
    """The rest of the Deployment verbs: an edit of the pipeline (update) and a stray
    Deployment with the pipeline's labels (delete), both with the same identity; the
    second router replica brings the router's PodDisruptionBudget (create)."""
    kc = control_plane.kubectl
    since = os.path.getsize(control_plane.audit_log)
    kc(
        "-n",
        SAMPLE_NS,
        "patch",
        "timestamppipeline",
        SAMPLE,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"router": {"replicas": 2}}}),
    )
    stray = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{SAMPLE}-stray",
            "labels": {"app.kubernetes.io/managed-by": "tspipe-operator", "app.kubernetes.io/instance": SAMPLE},
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"stray": "yes"}},
            "template": {
                "metadata": {"labels": {"stray": "yes"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    kc("-n", SAMPLE_NS, "apply", "-f", "-", input=json.dumps(stray))

    def done():
        router = json.loads(kc("-n", SAMPLE_NS, "get", "deployment", f"{SAMPLE}-router", "-o", "json").stdout)
        gone = kc("-n", SAMPLE_NS, "get", "deployment", f"{SAMPLE}-stray", check=False).returncode != 0
        pdb = kc("-n", SAMPLE_NS, "get", "poddisruptionbudget", f"{SAMPLE}-router", check=False).returncode == 0
        return router["spec"]["replicas"] == 2 and gone and pdb

    wait_for(done, 120, "router scaled to 2, its PodDisruptionBudget created, the stray Deployment deleted")
    ok = {
        (ev["verb"], ev.get("objectRef", {}).get("resource"), ev.get("objectRef", {}).get("name"))
        for ev in audit_events(control_plane.audit_log, since)
        if ev["user"]["username"] == SA_USER and ev["responseStatus"]["code"] < 400
    }
    assert ("update", "deployments", f"{SAMPLE}-router") in ok and ("delete", "deployments", f"{SAMPLE}-stray") in ok
    assert ("create", "poddisruptionbudgets", f"{SAMPLE}-router") in ok, ok
    assert reconciled["op"].alive()


SECRET_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
NOT_NEEDED = [  # (verb, resource) the operator never needs, in the sample namespace
    ("create", "pods"),
    ("get", "pods"),
    ("delete", "pods"),
    ("get", "configmaps"),
    ("create", "services"),
    ("create", "serviceaccounts"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "timestamppipelines.tspipe.io"),
    ("update", "timestamppipelines.tspipe.io"),
    ("delete", "timestamppipelines.tspipe.io"),
    ("patch", "deployments.apps"),
    ("create", "pods/exec"),
    ("patch", "poddisruptionbudgets.policy"),
    ("watch", "poddisruptionbudgets.policy"),
    ("get", "horizontalpodautoscalers.autoscaling"),
    ("update", "horizontalpodautoscalers.autoscaling"),
]


def can_i(control_plane, verb, resource, *scope) -> str:
    proc = control_plane.kubectl("auth", "can-i", verb, resource, *scope, f"--as={SA_USER}", check=False)
    return proc.stdout.strip()


def test_service_account_is_denied_secrets(control_plane, install, operator_kubeconfig):
    kc = control_plane.kubectl
    # The check can say yes: a right it has.
    assert can_i(control_plane, "create", "deployments.apps", "-n", SAMPLE_NS) == "yes"
    for verb in SECRET_VERBS:
        assert can_i(control_plane, verb, "secrets", "-n", SAMPLE_NS) == "no", verb
        assert can_i(control_plane, verb, "secrets", "-n", OPERATOR_NS) == "no", verb
    assert can_i(control_plane, "list", "secrets", "--all-namespaces") == "no"
    for verb, res in NOT_NEEDED:
        assert can_i(control_plane, verb, res, "-n", SAMPLE_NS) == "no", (verb, res)
    for verb, res in [
        ("create", "namespaces"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ]:
        assert can_i(control_plane, verb, res) == "no", (verb, res)

    # Real requests with the token: refused by the API server, the Secret untouched.
    name = f"install-probe-{uuid.uuid4().hex[:6]}"
    kc("-n", SAMPLE_NS, "create", "secret", "generic", name, "--from-literal=password=hunter2")
    try:
        attempts = {
            "get": ["-n", SAMPLE_NS, "get", "secret", name],
            "list": ["-n", SAMPLE_NS, "get", "secrets"],
            "create": ["-n", SAMPLE_NS, "create", "secret", "generic", name + "-x", "--from-literal=a=b"],
            "delete": ["-n", SAMPLE_NS, "delete", "secret", name],
        }
        for verb, args in attempts.items():
            proc = as_operator(operator_kubeconfig, *args)
            assert proc.returncode != 0, (verb, proc.stdout)
            assert "forbidden" in proc.stderr.lower() and f'cannot {verb} resource "secrets"' in proc.stderr, (
                proc.stderr
            )
        # kubectl patch/replace would GET first; these go straight to the write.
        path = f"/api/v1/namespaces/{SAMPLE_NS}/secrets/{name}"
        changed = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": SAMPLE_NS},
            "stringData": {"password": "x"},
        }
        for verb, method, body, ctype in (
            ("patch", "PATCH", {"stringData": {"password": "x"}}, "application/merge-patch+json"),
            ("update", "PUT", changed, "application/json"),
        ):
            status, reply = api_request(operator_kubeconfig, method, path, body, ctype)
            assert status == 403 and reply.get("reason") == "Forbidden", (verb, status, reply)
            assert f'cannot {verb} resource "secrets"' in reply["message"], reply
        secret = json.loads(kc("-n", SAMPLE_NS, "get", "secret", name, "-o", "json").stdout)
        assert secret["data"] == {"password": "aHVudGVyMg=="}
        assert kc("-n", SAMPLE_NS, "get", "secret", name + "-x", check=False).returncode != 0
    finally:
        kc("-n", SAMPLE_NS, "delete", "secret", name, "--ignore-not-found")


def test_the_default_install_grants_no_pod_proxy(control_plane, install, operator_kubeconfig):
    """Reading pods' HTTP endpoints through the API server is opt-in (manifests/pod-proxy):
    the operator reads the router pods' counters at their pod IPs."""
    assert can_i(control_plane, "list", "pods", "-n", SAMPLE_NS) == "yes"
    for ns in (SAMPLE_NS, OPERATOR_NS):
        assert can_i(control_plane, "get", "pods", "--subresource=proxy", "-n", ns) == "no", ns
    assert can_i(control_plane, "get", "pods", "--subresource=proxy", "--all-namespaces") == "no"
    # A real request with the token: refused before any pod is looked up.
    status, reply = api_request(
        operator_kubeconfig, "GET", f"/api/v1/namespaces/{SAMPLE_NS}/pods/any-pod:8080/proxy/actuator/prometheus"
    )
    assert status == 403 and 'cannot get resource "pods/proxy"' in reply.get("message", ""), (status, reply)


def test_namespaced_service_account_cannot_touch_other_namespaces(control_plane, install, operator_kubeconfig, variant):
    if variant.watched is None:
        pytest.skip("cluster-wide variant: every namespace is in scope")
    kc = control_plane.kubectl
    outside = f"tspipe-outside-{uuid.uuid4().hex[:6]}"
    kc("create", "namespace", outside)
    try:
        kc("-n", outside, "create", "deployment", "victim", "--image=registry.k8s.io/pause:3.10")
        assert can_i(control_plane, "get", "deployments.apps", "-n", variant.watched) == "yes"
        for verb in ("get", "list", "watch", "create", "update", "delete"):
            assert can_i(control_plane, verb, "deployments.apps", "-n", outside) == "no", verb
            assert can_i(control_plane, verb, "timestamppipelines.tspipe.io", "-n", outside) == "no", verb
        assert can_i(control_plane, "list", "deployments.apps", "--all-namespaces") == "no"
        attempts = {
            "get": ["-n", outside, "get", "deployment", "victim"],
            "list": ["get", "deployments", "--all-namespaces"],
            "create": ["-n", outside, "create", "deployment", "intruder", "--image=registry.k8s.io/pause:3.10"],
            "delete": ["-n", outside, "delete", "deployment", "victim"],
        }
        for verb, args in attempts.items():
            proc = as_operator(operator_kubeconfig, *args)
            assert proc.returncode != 0, (verb, proc.stdout)
            assert "forbidden" in proc.stderr.lower() and f'cannot {verb} resource "deployments"' in proc.stderr, (
                proc.stderr
            )
        # While in its own namespace the same request works.
        ok = as_operator(operator_kubeconfig, "-n", variant.watched, "get", "deployments")
        assert ok.returncode == 0, ok.stderr
        assert kc("-n", outside, "get", "deployment", "victim", check=False).returncode == 0
        assert kc("-n", outside, "get", "deployment", "intruder", check=False).returncode != 0
    finally:
        kc("delete", "namespace", outside, "--wait=false")


def _replicasets_of(control_plane, namespace, deployment_uid):
    rss = json.loads(control_plane.kubectl("-n", namespace, "get", "replicasets", "-o", "json").stdout)["items"]
    return [rs for rs in rss if any(r.get("uid") == deployment_uid for r in rs["metadata"].get("ownerReferences", []))]


def _admitted(control_plane, namespace, deployment):
    """The Deployment's pods exist (kwok schedules them and marks them Ready) and its
    ReplicaSets report no refused pod creation."""
    kc = control_plane.kubectl
    d = json.loads(kc("-n", namespace, "get", "deployment", deployment, "-o", "json").stdout)
    want = d["spec"]["replicas"]

    def available():
        cur = json.loads(kc("-n", namespace, "get", "deployment", deployment, "-o", "json").stdout)
        return (cur.get("status") or {}).get("availableReplicas", 0) == want

    wait_for(available, 180, f"{namespace}/{deployment} available")
    rss = _replicasets_of(control_plane, namespace, d["metadata"]["uid"])
    assert rss, "a ReplicaSet"
    pods = json.loads(kc("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    rs_uids = {rs["metadata"]["uid"] for rs in rss}
    mine = [p for p in pods if any(r.get("uid") in rs_uids for r in p["metadata"].get("ownerReferences", []))]
    assert len(mine) >= want > 0
    for rs in rss:
        conds = {c["type"] for c in (rs.get("status") or {}).get("conditions") or []}
        assert "ReplicaFailure" not in conds, rs["status"]
        events = json.loads(
            kc(
                "-n",
                namespace,
                "get",
                "events",
                "-o",
                "json",
                "--field-selector",
                f"involvedObject.uid={rs['metadata']['uid']}",
            ).stdout
        )["items"]
        assert not [e for e in events if e["reason"] == "FailedCreate"], events
    return mine


# A pod Pod Security "restricted" refuses: proves the namespaces really enforce it.
NON_COMPLIANT_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "psa-probe"},
    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
}


def test_restricted_pod_security_admits_every_pod(control_plane, install, reconciled):
    kc = control_plane.kubectl
    for ns in (OPERATOR_NS, SAMPLE_NS):
        labels = json.loads(kc("get", "namespace", ns, "-o", "json").stdout)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        refused = kc("-n", ns, "apply", "--dry-run=server", "-f", "-", input=json.dumps(NON_COMPLIANT_POD), check=False)
        assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr
    _admitted(control_plane, OPERATOR_NS, "tspipe-operator")
    for c in COMPONENTS:
        _admitted(control_plane, SAMPLE_NS, f"{SAMPLE}-{c}")


def test_readme_check_and_use_commands_work(control_plane, reconciled):
    """manifests/README.md's *Check* and *Use* commands, word for word, against this
    install with its operator running. Left out: `logs` (kwok runs no containers, so
    there are no logs), the file the reader writes (`my-pipeline.yaml`), and `-w`
    (a watch never ends)."""
    ran = 0
    for heading in ("### Check", "### Use"):
        for words in readme_commands(README, heading):
            if "logs" in words or "my-pipeline.yaml" in words or "-w" in words:
                continue
            proc = run_readme(control_plane, words)
            assert proc.returncode == 0, (words, proc.stderr)
            ran += 1
    assert ran >= 8
    # The last Use command deleted the sample; the garbage collector takes its Deployments.
    wait_for(
        lambda: (
            not json.loads(
                control_plane.kubectl(
                    "-n", SAMPLE_NS, "get", "deployments", "-l", f"app.kubernetes.io/instance={SAMPLE}", "-o", "json"
                ).stdout
            )["items"]
        ),
        120,
        "the sample's Deployments garbage-collected",
    )
