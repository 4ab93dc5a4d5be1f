"""The pod shape as SCDF Kubernetes deployer properties and back (pure): each podTemplate
field's and probe's translation, each refusal's message, and decode(encode(x)) == x."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from samples import sample_pipeline

from tspipe.components import COMPONENTS, ROUTER
from tspipe.model import Pipeline
from tspipe.scdf import podshape
from tspipe.scdf.podshape import ImportRefused, RenderError, decode, neutral_startup
from tspipe.scdf.render import app_deployer_properties, stream_plan

REPO = Path(__file__).resolve().parents[2]


def pipeline(router: dict | None = None, spec: dict | None = None) -> Pipeline:
    return Pipeline.from_resource(sample_pipeline(router=router or {}, **(spec or {})))


def router_props(**router) -> dict[str, str]:
    """The router's `kubernetes.` properties, without that prefix."""
    out = app_deployer_properties(pipeline(router), ROUTER)
    return {k.removeprefix("kubernetes."): v for k, v in out.items() if k.startswith("kubernetes.")}


# ---------------------------------------------------------------- each field's translation

# (podTemplate of the router, the deployer properties it must give, as the deployer reads them)
TRANSLATIONS = [
    ({"labels": {"team": "data", "example.com/tier": "1"}}, {"deploymentLabels": "team:data,example.com/tier:1"}),
    ({"annotations": {"example.com/note": "a:b c", "empty": ""}}, {"podAnnotations": "example.com/note:a:b c,empty:"}),
    (
        {"nodeSelector": {"disktype": "ssd", "kubernetes.io/os": "linux"}},
        {"nodeSelector": "disktype:ssd,kubernetes.io/os:linux"},
    ),
    (
        {
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"},
                {"key": "x", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
            ]
        },
        # ... and the operator's own node-loss tolerations (30 s), which a pipeline does not state.
        {
            "tolerations": "[{key: dedicated, operator: Equal, value: kafka, effect: NoSchedule}, "
            "{key: x, operator: Exists, effect: NoExecute, tolerationSeconds: 30}, "
            "{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 30}, "
            "{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, "
            "tolerationSeconds: 30}]"
        },
    ),
    (
        {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
                        ]
                    }
                }
            }
        },
        {
            "affinity.nodeAffinity": "{requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: "
            "[{matchExpressions: [{key: zone, operator: In, values: [a, b]}]}]}}"
        },
    ),
    # A label selector's keys are a Map in the deployer's model: bracketed, so Spring's
    # Binder keeps `app.kubernetes.io/name` whole instead of nesting it at the dots.
    (
        {
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 50,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "tsp-router"}},
                            },
                        }
                    ]
                }
            }
        },
        {
            "affinity.podAntiAffinity": "{preferredDuringSchedulingIgnoredDuringExecution: [{weight: 50, "
            "podAffinityTerm: "
            "{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: "
            "{'[app.kubernetes.io/name]': tsp-router}}}}]}"
        },
    ),
    ({"priorityClassName": "high"}, {"priorityClassName": "high"}),
    ({"serviceAccountName": "router-sa"}, {"deploymentServiceAccountName": "router-sa"}),
    ({"imagePullSecrets": [{"name": "regcred"}, {"name": "other"}]}, {"imagePullSecrets": "[regcred, other]"}),
    (
        {
            "volumes": [{"name": "cfg", "configMap": {"name": "router-cfg", "defaultMode": 292}}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/router", "readOnly": True}],
        },
        {
            "volumes": "[{name: tmp, emptyDir: {sizeLimit: 256Mi}}, {name: cfg, configMap: {name: router-cfg, "
            "defaultMode: 292}}]",
            "volumeMounts": "[{name: tmp, mountPath: /tmp}, {name: cfg, mountPath: /etc/router, readOnly: true}]",
        },
    ),
    (
        {"envFrom": [{"configMapRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}, {"secretRef": {"name": "s"}}]},
        {"configMapRefs": "[a, b]", "secretRefs": "[s]"},
    ),
    (
        {"resources": {"requests": {"cpu": "250m", "memory": "300Mi"}, "limits": {"cpu": 1, "memory": "300Mi"}}},
        {"requests.cpu": "250m", "requests.memory": "300Mi", "limits.cpu": "1", "limits.memory": "300Mi"},
    ),
]


@pytest.mark.parametrize("template,expected", TRANSLATIONS, ids=lambda v: ",".join(v) if isinstance(v, dict) else "")
def test_each_pod_template_field_becomes_its_deployer_property(template, expected):
    props = router_props(podTemplate=template)
    assert {k: props.get(k) for k in expected} == expected
    # ... and reads back as the same field (the same table, the other way).
    back = decode(props, ROUTER, "deployer.python-router.kubernetes").pod_template
    for field, value in template.items():
        want = value
        if field == "resources":
            want = {s: {r: str(q) for r, q in v.items()} for s, v in value.items()}
        assert back[field] == want, field


def test_strings_that_yaml_would_read_as_other_types_are_quoted():
    # SnakeYAML (the deployer's parser) reads yes/on/true/null and numbers as such: a
    # label value "true" or "1" must reach the pod as the string.
    assert podshape.flow({"a": "true", "b": "1", "c": "on", "d": "it's", "e": 2, "f": True}) == (
        "{a: 'true', b: '1', c: 'on', d: 'it''s', e: 2, f: true}"
    )


def test_no_double_quotes_so_the_shell_script_can_carry_them():
    p = pipeline({"podTemplate": {"tolerations": [{"key": "a b", "operator": "Exists"}]}})
    assert all('"' not in v for v in stream_plan(p).deployer.values())


# ---------------------------------------------------------------- env

ENV = [
    {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx200m -Dlist=a,b"},
    {"name": "log.level", "value": "debug"},
    {"name": "EMPTY", "value": ""},
    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    {"name": "REGION", "valueFrom": {"configMapKeyRef": {"name": "site", "key": "region"}}},
]


def test_env_becomes_environment_variables_and_key_refs_and_reads_back():
    doc_env = copy.deepcopy(ENV)
    props = app_deployer_properties(pipeline({"env": doc_env}), ROUTER)
    assert props["kubernetes.environmentVariables"] == "JAVA_TOOL_OPTIONS='-Xmx200m -Dlist=a,b',log.level=debug,EMPTY="
    assert props["kubernetes.secretKeyRefs"] == "[{envVarName: DB_PASSWORD, secretName: db, dataKey: password}]"
    assert props["kubernetes.configMapKeyRefs"] == "[{envVarName: REGION, configMapName: site, dataKey: region}]"
    k8s = {k.removeprefix("kubernetes."): v for k, v in props.items() if k.startswith("kubernetes.")}
    assert decode(k8s, ROUTER, "d").env == ENV


@pytest.mark.parametrize(
    "var,message",
    [
        (
            {"name": "A", "value": "it's"},
            "spec.router.env[0].value: the deployer's environmentVariables drop every single quote",
        ),
        ({"name": "A", "value": "$(B)/x"}, "spec.router.env[0].value: the deployer does not keep the env vars' order"),
        (
            {"name": "a.b", "value": "x,y"},
            "spec.router.env[0].value: the deployer's environmentVariables can hold a "
            "comma only in the value of a name of letters, digits and '_'",
        ),
        (
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            "spec.router.env[0].valueFrom.fieldRef: the deployer's env vars are values, secretKeyRefs and "
            "configMapKeyRefs",
        ),
        (
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}},
            "spec.router.env[0].valueFrom.secretKeyRef.optional: the deployer's secretKeyRefs cannot be optional",
        ),
    ],
)
def test_env_the_deployer_cannot_carry_is_refused(var, message):
    with pytest.raises(RenderError) as ei:
        stream_plan(pipeline({"env": [var]}))
    assert str(ei.value).startswith(message), str(ei.value)


# ---------------------------------------------------------------- probes


def test_http_probes_carry_every_field_and_a_startup_probe_that_changes_nothing():
    props = router_props(
        probes={
            "readiness": {
                "httpGet": {"path": "/ready", "port": 9000},
                "initialDelaySeconds": 3,
                "periodSeconds": 4,
                "timeoutSeconds": 6,
                "failureThreshold": 7,
            }
        }
    )
    assert {k: v for k, v in props.items() if k.startswith("readiness")} == {
        "readinessHttpProbePath": "/ready",
        "readinessHttpProbePort": "9000",
        "readinessHttpProbeDelay": "3",
        "readinessHttpProbePeriod": "4",
        "readinessHttpProbeTimeout": "6",
        "readinessHttpProbeFailure": "7",
    }
    # No startup probe in the pipeline: the deployer always adds one (GET /actuator/info
    # after 30 s by default), so this one checks the liveness endpoint each second from
    # the earlier delay and gives up when liveness (10 + 30 * 3 s) would have restarted.
    assert {k: v for k, v in props.items() if k.startswith("startup")} == {
        "startupHttpProbePath": "/actuator/health/liveness",
        "startupHttpProbePort": "8080",
        "startupHttpProbeDelay": "3",
        "startupHttpProbePeriod": "1",
        "startupHttpProbeTimeout": "2",
        "startupHttpProbeFailure": str(10 + 30 * 3 - 3),
    }
    assert "probeType" not in props


def test_a_startup_probe_in_the_pipeline_is_sent_as_is():
    props = router_props(
        probes={
            "startup": {
                "httpGet": {"path": "/started"},
                "initialDelaySeconds": 0,
                "periodSeconds": 2,
                "timeoutSeconds": 1,
                "failureThreshold": 30,
            }
        }
    )
    assert {k: v for k, v in props.items() if k.startswith("startup")} == {
        "startupHttpProbePath": "/started",
        "startupHttpProbePort": "8080",
        "startupHttpProbeDelay": "0",
        "startupHttpProbePeriod": "2",
        "startupHttpProbeTimeout": "1",
        "startupHttpProbeFailure": "30",
    }


def test_tcp_probes_use_the_deployers_tcp_properties():
    tcp = {"tcpSocket": {"port": 8081}, "timeoutSeconds": 1}
    props = router_props(probes={"readiness": {**tcp, "initialDelaySeconds": 2}, "liveness": tcp})
    assert props["probeType"] == "TCP"
    assert {k: v for k, v in props.items() if k.startswith("readiness")} == {
        "readinessTcpProbePort": "8081",
        "readinessTcpProbeDelay": "2",
        "readinessTcpProbePeriod": "10",
        "readinessTcpProbeFailure": "3",
    }
    assert not [k for k in props if "Http" in k]


def test_a_tcp_probe_with_a_timeout_other_than_one_second_is_refused():
    with pytest.raises(
        RenderError,
        match=re.escape("spec.router.probes.readiness.timeoutSeconds: the deployer's TCP probes have no timeout"),
    ):
        router_props(probes={"readiness": {"tcpSocket": {}}, "liveness": {"tcpSocket": {}, "timeoutSeconds": 1}})


def test_mixed_http_and_tcp_probes_are_refused():
    with pytest.raises(
        RenderError,
        match=re.escape("spec.router.probes.liveness: the deployer takes one probe type per app (probeType)"),
    ):
        router_props(probes={"liveness": {"tcpSocket": {}, "timeoutSeconds": 1}})


def test_neutral_startup_reads_back_as_no_startup_probe():
    for c in COMPONENTS:
        props = {
            k.removeprefix("kubernetes."): v
            for k, v in app_deployer_properties(pipeline(), c).items()
            if k.startswith("kubernetes.")
        }
        probes = decode(props, c, "x").probes
        assert probes == pipeline().app(c).probes
        assert probes.startup is None
        assert neutral_startup(probes).failure_threshold >= 1


# ---------------------------------------------------------------- refusals, each naming the field

REFUSALS = [
    (
        {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]},
        "spec.router.podTemplate.topologySpreadConstraints: SCDF's Kubernetes deployer "
        "(spring-cloud-deployer-kubernetes 2.9.5) has no property for topologySpreadConstraints",
    ),
    ({"labels": {"empty": ""}}, "spec.router.podTemplate.labels.empty: an empty value cannot be expressed"),
    ({"labels": {"role": "x"}}, "spec.router.podTemplate.labels.role: the deployer sets pod label role itself"),
    ({"annotations": {"a": "x,y"}}, "spec.router.podTemplate.annotations.a: the value 'x,y' has a comma"),
    ({"nodeSelector": {"a": ""}}, "spec.router.podTemplate.nodeSelector.a: an empty value cannot be expressed"),
    (
        {"resources": {"limits": {"memory": "1Gi", "ephemeral-storage": "1Gi"}}},
        "spec.router.podTemplate.resources.limits.ephemeral-storage: the deployer sets only cpu and memory limits",
    ),
    (
        {"envFrom": [{"prefix": "X_", "configMapRef": {"name": "a"}}]},
        "spec.router.podTemplate.envFrom[0].prefix: the deployer's configMapRefs and secretRefs take names only",
    ),
    (
        {"envFrom": [{"secretRef": {"name": "a", "optional": True}}]},
        "spec.router.podTemplate.envFrom[0].secretRef.optional: the deployer's secretRefs cannot be optional",
    ),
    (
        {"envFrom": [{"secretRef": {"name": "s"}}, {"configMapRef": {"name": "c"}}]},
        "spec.router.podTemplate.envFrom[1]: the deployer puts every configMapRef before every secretRef",
    ),
    (
        {"volumes": [{"name": "d", "emptyDir": {}}]},
        "spec.router.podTemplate.volumes[0]: no volumeMount uses volume 'd', and the deployer drops",
    ),
    (
        {
            "volumes": [{"name": "d", "emptyDir": {"medium": "Memory", "mode": 448}}],
            "volumeMounts": [{"name": "d", "mountPath": "/d"}],
        },
        "spec.router.podTemplate.volumes[0].emptyDir.mode: SCDF's Kubernetes deployer "
        "(spring-cloud-deployer-kubernetes 2.9.5, fabric8 model 5.12.4) has no such field and would drop it silently",
    ),
    (
        {
            "volumes": [{"name": "d", "emptyDir": {}}],
            "volumeMounts": [{"name": "d", "mountPath": "/d", "recursiveReadOnly": "Disabled"}],
        },
        "spec.router.podTemplate.volumeMounts[0].recursiveReadOnly: SCDF's Kubernetes deployer",
    ),
    (
        {
            "affinity": {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "topologyKey": "zone",
                            "matchLabelKeys": ["pod-template-hash"],
                            "labelSelector": {"matchLabels": {"a": "b"}},
                        }
                    ]
                }
            }
        },
        "spec.router.podTemplate.affinity.podAffinity."
        "requiredDuringSchedulingIgnoredDuringExecution[0].matchLabelKeys: SCDF's Kubernetes deployer",
    ),
]


@pytest.mark.parametrize("template,message", REFUSALS, ids=[m.split(":")[0] for _, m in REFUSALS])
def test_what_the_deployer_cannot_express_is_refused_naming_the_field(template, message):
    with pytest.raises(RenderError) as ei:
        stream_plan(pipeline({"podTemplate": template}))
    assert str(ei.value).startswith(message), str(ei.value)


def test_a_refused_field_of_the_pipelines_podtemplate_is_named_there():
    spec = {
        "podTemplate": {
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]
        }
    }
    with pytest.raises(RenderError, match=r"^spec\.podTemplate\.topologySpreadConstraints: "):
        stream_plan(pipeline(spec=spec))


# ---------------------------------------------------------------- decode: every property, both ways

FULL = {
    "labels": {"team": "data"},
    "annotations": {"example.com/a": "1"},
    "nodeSelector": {"disktype": "ssd"},
    "tolerations": [{"key": "k", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    "affinity": TRANSLATIONS[5][0]["affinity"],
    "priorityClassName": "high",
    "serviceAccountName": "sa",
    "imagePullSecrets": [{"name": "regcred"}],
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}}],
    "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "x"}],
    "envFrom": [{"configMapRef": {"name": "c"}}, {"secretRef": {"name": "s"}}],
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
}


def test_a_stream_without_the_node_loss_tolerations_imports_with_a_note_saying_so():
    props = router_props(podTemplate={"tolerations": [{"key": "a", "operator": "Exists"}]})
    props["tolerations"] = "[{key: a, operator: Exists}]"  # deployed by SCDF alone
    back = decode(props, ROUTER, "d")
    assert back.pod_template["tolerations"] == [{"key": "a", "operator": "Exists"}]
    assert any("d.tolerations: the stream's pods do not tolerate node loss" in n for n in back.notes)
    assert not any("tolerat" in n for n in decode(router_props(), ROUTER, "d").notes)


def test_decode_of_encode_is_the_whole_pod_template():
    props = router_props(podTemplate=copy.deepcopy(FULL))
    assert decode(props, ROUTER, "d").pod_template == FULL


@pytest.mark.parametrize(
    "props,message",
    [
        (
            {"hostNetwork": "true"},
            "deployer.python-router.kubernetes.hostNetwork: a deployer property the pipeline has no field for",
        ),
        (
            {"podSecurityContext": "{runAsUser: 0}"},
            "deployer.python-router.kubernetes.podSecurityContext: '{runAsUser: 0}' differs from the operator's own",
        ),
        ({"probeType": "COMMAND"}, "deployer.python-router.kubernetes.probeType: COMMAND probes have no equivalent"),
        ({"probeType": "TCP"}, "deployer.python-router.kubernetes.readinessTcpProbePort: a TCP probe needs its port"),
        (
            {"volumes": "[{name: tmp, emptyDir: {}}]"},
            "deployer.python-router.kubernetes.volumes[0]: 'tmp' is the operator's own",
        ),
        (
            {"readinessHttpProbeDelay": "soon"},
            "deployer.python-router.kubernetes.readinessHttpProbeDelay: 'soon' is not a whole number",
        ),
    ],
)
def test_decode_refuses_what_a_pipeline_cannot_hold(props, message):
    with pytest.raises(ImportRefused) as ei:
        decode(props, ROUTER, "deployer.python-router.kubernetes")
    assert str(ei.value).startswith(message), str(ei.value)


def test_decode_without_properties_is_what_the_deployer_gives_by_default():
    # The recipe's stream sets no deployer property: its pods get the deployer's defaults.
    d = decode({}, ROUTER, "x")
    assert (d.probes.readiness.path, d.probes.readiness.initial_delay, d.probes.readiness.timeout) == (
        "/actuator/info",
        1,
        5,
    )
    assert (d.probes.liveness.path, d.probes.liveness.period) == ("/actuator/health", 60)
    assert (
        d.probes.startup.path,
        d.probes.startup.initial_delay,
        d.probes.startup.period,
        d.probes.startup.failure_threshold,
    ) == ("/actuator/info", 30, 3, 20)
    assert d.pod_template == {}
    assert any("podSecurityContext is not set" in n for n in d.notes)


def test_the_docs_mapping_names_every_property_of_the_table():
    """docs/scdf.md's mapping is written by hand: every deployer property the table (and
    env) uses, and every field it refuses whole, must be in it."""
    doc = (REPO / "docs" / "scdf.md").read_text()
    table = doc[doc.index("### The mapping") : doc.index("## Importing a stream")]
    for f in podshape.POD_FIELDS:
        assert f"`podTemplate.{f.field}`" in table, f.field
        for key in f.keys:
            name = key.split(".")[-1] if key.startswith(("requests.", "limits.", "affinity.")) else key
            assert name in table, key
    for key in podshape.ENV_KEYS:
        assert f"`{key}`" in table, key
    for suffix in {s for _, s in podshape.HTTP_PROBE}:
        assert f"`{suffix}`" in table or f"Probe{suffix}`" in table, suffix
