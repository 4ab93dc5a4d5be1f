"""podTemplate inputs that must be refused, shared by the parser's unit tests and the
API server's (test_podtemplate_kube.py): both must refuse each, naming the same field.

Each case: (id, spec patch merged into the sample, the field named, a fragment of the message).
"""

from __future__ import annotations

JVM = {"requests": {"cpu": "100m", "memory": "768Mi"}, "limits": {"memory": "768Mi"}}
PYTHON = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}

# Refused by a CEL rule (the API server) and its mirror (the parser).
RULE_REFUSALS = [
    (
        "selector-label",
        {"podTemplate": {"labels": {"app.kubernetes.io/instance": "other"}}},
        "spec.podTemplate.labels",
        "label app.kubernetes.io/instance is set by the operator",
    ),
    (
        "component-label-of-an-app",
        {"router": {"podTemplate": {"labels": {"app.kubernetes.io/component": "x"}}}},
        "spec.router.podTemplate.labels",
        "label app.kubernetes.io/component is set by the operator",
    ),
    (
        "operator-annotation",
        {"time": {"podTemplate": {"annotations": {"tspipe.io/restartedAt": "x"}}}},
        "spec.time.podTemplate.annotations",
        "annotation tspipe.io/restartedAt is set by the operator",
    ),
    ("invalid-label-key", {"podTemplate": {"labels": {"not a key": "x"}}}, "spec.podTemplate.labels", "label key"),
    (
        "operator-volume-name",
        {"podTemplate": {"volumes": [{"name": "tmp", "emptyDir": {}}]}},
        "spec.podTemplate.volumes[0].name",
        "volume name tmp is the operator's",
    ),
    (
        "ca-volume-name",
        {
            "oddLogger": {
                "podTemplate": {
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "kafka-ca", "secret": {"secretName": "x"}}]
                }
            }
        },
        "spec.oddLogger.podTemplate.volumes[1].name",
        "kafka-ca",
    ),
    (
        "mount-on-tmp",
        {"evenLogger": {"podTemplate": {"volumeMounts": [{"name": "data", "mountPath": "/tmp/"}]}}},
        "spec.evenLogger.podTemplate.volumeMounts[0].mountPath",
        "/tmp",
    ),
    (
        "mount-above-the-ca",
        {"podTemplate": {"volumeMounts": [{"name": "data", "mountPath": "/etc"}]}},
        "spec.podTemplate.volumeMounts[0].mountPath",
        "/etc/tspipe/kafka-ca",
    ),
    (
        "resources-twice",
        {
            "router": {
                "resources": {"limits": {"memory": "1Gi"}},
                "podTemplate": {"resources": {"limits": {"memory": "2Gi"}}},
            }
        },
        "spec.router.podTemplate.resources",
        "not both",
    ),
    (
        "pod-and-podTemplate",
        {"pod": {"nodeSelector": {"disk": "ssd"}}, "podTemplate": {"nodeSelector": {"a": "b"}}},
        "spec.pod",
        "older name of spec.podTemplate",
    ),
]

# Not in the schema at all: kubectl's strict field validation names the unknown field.
UNKNOWN_FIELD_REFUSALS = [
    (
        "security-context",
        {"router": {"podTemplate": {"securityContext": {"runAsUser": 0}}}},
        "spec.router.podTemplate.securityContext",
        "unknown field",
    ),
    (
        "container-security-context",
        {"podTemplate": {"containerSecurityContext": {"privileged": True}}},
        "spec.podTemplate.containerSecurityContext",
        "unknown field",
    ),
    (
        "env",
        {"time": {"podTemplate": {"env": [{"name": "A", "value": "1"}]}}},
        "spec.time.podTemplate.env",
        "unknown field",
    ),
    (
        "args",
        {"time": {"podTemplate": {"args": ["--server.port=9090"]}}},
        "spec.time.podTemplate.args",
        "unknown field",
    ),
    (
        "probe",
        {"podTemplate": {"livenessProbe": {"exec": {"command": ["true"]}}}},
        "spec.podTemplate.livenessProbe",
        "unknown field",
    ),
    (
        "host-path-volume",
        {"podTemplate": {"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}},
        "spec.podTemplate.volumes[0].hostPath",
        "unknown field",
    ),
    (
        "toleration-typo",
        {"podTemplate": {"tolerations": [{"key": "k", "operater": "Exists"}]}},
        "spec.podTemplate.tolerations[0].operater",
        "unknown field",
    ),
]
