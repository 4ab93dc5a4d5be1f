"""The names and labels the operator shares with the world: the API group and kind, the
annotations it reads, the labels and finalizer it sets, the user agent the API server's
audit log names. The CRD, the manifests and the children agree on them; every other
module imports them from here.
"""

from __future__ import annotations

API_GROUP = "tspipe.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"  # apiVersion of a TimestampPipeline
KIND = "TimestampPipeline"
PLURAL = "timestamppipelines"
SINGULAR = "timestamppipeline"
SHORT_NAMES = ("tsp",)

# The router's outputs by their role names, as topics, status, the rollout checks and the
# shadow's comparison say them: a timestamp goes to even or odd by its last digit, and
# what cannot be routed to the dead-letter topic.
EVEN, ODD, DEAD_LETTER = "even", "odd", "deadLetter"
ROUTED = (EVEN, ODD)
OUTPUTS = (*ROUTED, DEAD_LETTER)

# Field manager of every write, the children's managed-by label and the Events' source.
MANAGER = "tspipe-operator"
USER_AGENT = "tspipe-operator/0.1.0"  # how the API server's audit log attributes the writes
PART_OF = "tspipe"

# Annotation on each child Deployment: the hash of what the operator rendered.
HASH_ANNOTATION = f"{API_GROUP}/desired-hash"
# Finalizer on pipelines whose topics are deleted with them (spec.kafka.topics.deleteOnRemoval).
FINALIZER = f"{API_GROUP}/delete-topics"

# Switches a user sets on a pipeline with `kubectl annotate` (Strimzi's style: actions and
# holds are not desired state, so they stay out of the spec; see switches.py).
# "true": the operator writes nothing to the pipeline's children until it is removed.
RECONCILE_PAUSED_ANNOTATION = f"{API_GROUP}/reconcile-paused"
# App name(s) as the spec names them, comma-separated: roll those Deployments once; the
# operator removes the annotation when done.
RESTART_ANNOTATION = f"{API_GROUP}/restart"
# Where the router's consumer group resumes: earliest, latest, an RFC 3339 time or
# `partition:offset` pairs; the operator stops the router, sets the group's offsets on the
# input topic, starts it again and removes the annotation (replay.py).
RESET_OFFSETS_ANNOTATION = f"{API_GROUP}/reset-offsets"
# Pod-template annotation a restart sets (as `kubectl rollout restart` sets its own).
RESTARTED_AT_ANNOTATION = f"{API_GROUP}/restartedAt"

# Recommended labels on every child (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"

# Selects every child this operator manages (the Deployment watch is filtered by it).
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER}"

# What the operator puts into every app's pod that a podTemplate may not override
# (podtemplate.py refuses them, in the CRD's CEL rules and in the parser).
OWNED_LABELS = (LABEL_NAME, LABEL_INSTANCE, LABEL_COMPONENT, LABEL_PART_OF, LABEL_MANAGED_BY)
OWNED_KEY_PREFIX = f"{API_GROUP}/"  # labels and annotations under tspipe.io/ are the operator's
TMP_VOLUME = "tmp"  # writable scratch space (the root filesystem is read-only)
TMP_MOUNT_PATH = "/tmp"
CA_VOLUME = "kafka-ca"  # the Kafka CA from spec.kafka.credentials.caSecretName
CA_MOUNT_PATH = "/etc/tspipe/kafka-ca"
# Deployment annotation: the pod-template annotation keys that came from a podTemplate,
# so that one removed from the podTemplate is removed from the pods too (others, such as
# `kubectl rollout restart`'s, are kept).
POD_ANNOTATIONS_ANNOTATION = f"{API_GROUP}/pod-annotations"
