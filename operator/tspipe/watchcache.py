"""The pipelines, their Deployments and pods as the watches last delivered them (pure).

Like client-go's informer cache: the watch events kopf already receives (the operator
watches exactly these objects to know when to run a pass) are kept, so a pass reads
its Deployments and pods from memory instead of LISTing them and decoding their JSON
(the largest cost of a pass, issue 26).

- Deployments are grouped by namespace and owning pipeline (`owner_of`), pods by
  namespace and their instance label; each is also keyed by namespace and name, so an
  object whose owner or label changes moves between groups.
- An object replaces the cached one unless it is older (by resourceVersion, compared as
  a number, which is what the API server serves from etcd; an unparsable one counts as
  newer): the write responses the passes put in (read-your-writes) and the watch's
  events arrive in no common order. A deletion leaves a tombstone for a while, so an
  older copy that arrives late (a write response raced with a deletion) is refused.
- Only what the passes read is kept: a Deployment whole but for `managedFields` (the
  update the diff plans is a copy of the cached object: leaving out more would drop
  fields on a PUT); a pod's metadata (without `managedFields`) and status. Deployments
  and pods are kept packed (`Store.packed`): a fifth of their memory as dicts.
- `seen`: the Deployment names a pipeline has had in the cache. A pass looks up by
  name (a GET) only those of its four children that are missing now but were seen: a
  child whose labels were edited away leaves the watch (the API server sends a DELETED
  for it) but still exists and must be adopted back.

- The pipelines themselves (`pipelines`): only those their watch delivered, plus our
  writes' answers for those (read-your-writes: the next pass sees its own status). A
  pass reads its pipeline from here instead of a GET; `inputs` is what a pass read, by
  version, so the next pass can tell that nothing it reads changed (controller.py).

A cache can be stale: a write based on it carries the resourceVersion read (a PUT, a
DELETE's precondition) or fails if the object exists (a create), so a stale read fails
with 409, never writes over something newer; after such a conflict the pass reads
from the API instead (clients.py). What no write reveals is an object deleted while a
watch was down (a broken watch, kopf's pause on peering): kopf lists again then, but
reports no DELETED for what is missing from the new list. So a list after the first
one (`relisted`) starts a new `epoch`, and each pipeline's next pass reads from the
API once. A settled pipeline's periodic pass reads the cache (as client-go's resync).
"""

from __future__ import annotations

import pickle
import sys
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .names import API_GROUP, KIND, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER

__all__ = ["Store", "WatchCache", "inputs", "owner_of", "pod_group", "slim_deployment", "slim_pipeline", "slim_pod"]

Obj = dict[str, Any]
Group = tuple[str, str]  # (namespace, pipeline name)

# How long a deletion refuses older copies of the object: longer than a write's
# response can take (the Kubernetes client's request timeout is 60 s).
TOMBSTONE_SECONDS = 120.0


def owner_of(deployment_body: Mapping[str, Any]) -> str | None:
    """The pipeline a Deployment belongs to: its controller reference, else its labels."""
    meta = deployment_body.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(API_GROUP + "/"):
            name = ref.get("name")
            return str(name) if name is not None else None
    labels = meta.get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) == MANAGER:
        instance = labels.get(LABEL_INSTANCE)
        return str(instance) if instance is not None else None
    return None


def pod_group(pod: Mapping[str, Any]) -> str | None:
    """The pipeline a pod belongs to: its instance label (what the LIST selected by)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    instance = labels.get(LABEL_INSTANCE)
    return str(instance) if instance is not None else None


SHARED_STRING = 64  # strings up to this long are interned: keys, env names, images, labels


def _shared(value: Any) -> Any:
    """A deep copy whose keys and short strings are interned: thousands of cached
    pipelines repeat the same keys and values, and one copy of each halves their
    memory (16.6 to 8.0 kB for a rendered Deployment). The copy also keeps the cache's
    objects apart from the watch's."""
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if isinstance(value, str) and len(value) <= SHARED_STRING:
        return sys.intern(value)
    return value


def _meta_without_managed_fields(obj: Mapping[str, Any]) -> Obj:
    return {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}


def slim_deployment(obj: Mapping[str, Any]) -> Obj:
    """A Deployment as kept: everything but metadata.managedFields."""
    return {**obj, "metadata": _meta_without_managed_fields(obj)}


def slim_pod(obj: Mapping[str, Any]) -> Obj:
    """A pod as kept: what the status, replay and rollout read (its name, labels,
    deletion and status: conditions, container statuses, IP)."""
    out: Obj = {"metadata": _meta_without_managed_fields(obj), "status": obj.get("status") or {}}
    node = (obj.get("spec") or {}).get("nodeName")
    if node:
        out["spec"] = {"nodeName": node}
    return out


# zlib's fastest level over pickle: a rendered Deployment with a status packs to 1.7 kB in
# ~30 us and unpacks in ~21 us; over compact JSON it packed to 1.5 kB in ~88 us (34 us to
# unpack), and packing every watch event was 8% of the operator's CPU at N=1,000 (issue 26).
# Only the cache's own bytes are ever unpickled.
PACK_LEVEL = 1


def _pack(obj: Obj) -> bytes:
    return zlib.compress(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), PACK_LEVEL)


def _unpack(blob: bytes) -> Obj:
    out: Obj = pickle.loads(zlib.decompress(blob))  # noqa: S301 - our own bytes (_pack)
    return out


def slim_pipeline(obj: Mapping[str, Any]) -> Obj:
    """A pipeline as kept: everything but metadata.managedFields."""
    return {**obj, "metadata": _meta_without_managed_fields(obj)}


def _versions(objs: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(o["metadata"]["name"]), str(o["metadata"].get("resourceVersion"))) for o in objs))


def inputs(
    pipeline: Mapping[str, Any],
    deployments: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]] | None,
) -> tuple[Any, ...]:
    """What a pass read, by version: the pipeline, its Deployments and (None when the pass
    did not read them) its pods. Two passes over equal inputs do the same thing."""
    rv = str((pipeline.get("metadata") or {}).get("resourceVersion"))
    return (rv, _versions(deployments), None if pods is None else _versions(pods))


def _rv(obj: Mapping[str, Any]) -> int | None:
    try:
        return int(str((obj.get("metadata") or {}).get("resourceVersion")))
    except ValueError:
        return None


def _older(rv: int | None, than: int | None) -> bool:
    """Strictly older; unknown versions are never older (the newest arrival wins)."""
    return rv is not None and than is not None and rv < than


@dataclass
class _Entry:
    obj: Obj | bytes  # bytes: packed (Store.packed)
    rv: int | None
    version: str  # metadata.resourceVersion as served (what `inputs` compares)
    group: str | None


@dataclass
class Store:
    """One kind's objects, by (namespace, name) and by (namespace, group).

    `packed`: each object is kept pickled and zlib-compressed, and decoded when read, each
    read a copy of its own. Deployments and pods are most of the cache (at N=2,000
    pipelines, 8,000 of each: 38 and 17 kB per pipeline as dicts); a pass reads its own
    few, and the check that nothing changed since its last pass reads only versions."""

    group_of: Callable[[Mapping[str, Any]], str | None]
    slim: Callable[[Mapping[str, Any]], Obj]
    clock: Callable[[], float]
    packed: bool = False
    # Remember the names each group had (Deployments: the GET-by-name rule above; not
    # pods, whose names change with every rollout).
    track_seen: bool = False
    tombstone_seconds: float = TOMBSTONE_SECONDS
    _objects: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    _groups: dict[Group, dict[str, _Entry]] = field(default_factory=dict)
    _seen: dict[Group, set[str]] = field(default_factory=dict)
    # (namespace, name) -> (resourceVersion deleted at, when); oldest first.
    _tombstones: OrderedDict[tuple[str, str], tuple[int | None, float]] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._objects)

    def upsert(self, obj: Mapping[str, Any]) -> bool:
        """Keep `obj` (a watch event's, a LIST's or a write's answer) unless the cache
        has a newer copy or saw it deleted at a later version; True if kept."""
        found = self._not_older(obj)
        if found is None:
            return False
        key, rv, old = found
        ns = key[0]
        tomb = self._tombstones.get(key)
        if tomb is not None:
            if rv is not None and tomb[0] is not None and rv <= tomb[0]:
                return False  # a copy from before the deletion, arriving late
            del self._tombstones[key]
        group = self.group_of(obj)
        if old is not None and old.group != group:
            self._unlink(key, old.group)
        slim = self.slim(obj)
        version = str((obj.get("metadata") or {}).get("resourceVersion"))
        entry = _Entry(_pack(slim) if self.packed else _shared(slim), rv, version, group)
        self._objects[key] = entry
        if group is not None:
            self._groups.setdefault((ns, group), {})[key[1]] = entry
            if self.track_seen:
                self._seen.setdefault((ns, group), set()).add(key[1])
        return True

    def delete(self, obj: Mapping[str, Any]) -> bool:
        """A watch's DELETED (or our own delete's success: the object as we deleted it).
        Ignored if the cache has a newer copy (say, one created since under the same
        name); True if removed."""
        found = self._not_older(obj)
        if found is None:
            return False
        key, rv, old = found
        self._bury(key, rv)
        if old is not None:
            del self._objects[key]
            self._unlink(key, old.group)
        return True

    def _not_older(self, obj: Mapping[str, Any]) -> tuple[tuple[str, str], int | None, _Entry | None] | None:
        """`obj`'s key, version and the cached entry, unless `obj` is nameless or older
        than what the cache holds (None)."""
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            return None
        key = (meta.get("namespace") or "", str(name))
        rv = _rv(obj)
        old = self._objects.get(key)
        if old is not None and _older(rv, old.rv):
            return None
        return key, rv, old

    def remove(self, namespace: str, name: str) -> None:
        """Drop an object without a tombstone (a LIST did not return it)."""
        old = self._objects.pop((namespace, name), None)
        if old is not None:
            self._unlink((namespace, name), old.group)

    def get(self, namespace: str, name: str) -> Obj | None:
        entry = self._objects.get((namespace, name))
        return self._read(entry) if entry else None

    def group(self, namespace: str, group: str) -> list[Obj]:
        """The group's objects (read only unless packed: then each read is a copy)."""
        return [self._read(e) for e in self._groups.get((namespace, group), {}).values()]

    def versions(self, namespace: str, group: str) -> tuple[tuple[str, str], ...]:
        """`_versions` of `group(namespace, group)`, without reading the objects."""
        return tuple(sorted((name, e.version) for name, e in self._groups.get((namespace, group), {}).items()))

    def _read(self, entry: _Entry) -> Obj:
        return _unpack(entry.obj) if isinstance(entry.obj, bytes) else entry.obj

    def seen(self, namespace: str, group: str) -> set[str]:
        return self._seen.get((namespace, group), set())

    def saw(self, namespace: str, group: str, name: str) -> None:
        """A GET by name found it (without our labels, so not in the watch): look it up
        again on the next passes too."""
        if self.track_seen:
            self._seen.setdefault((namespace, group), set()).add(name)

    def refresh(self, namespace: str, group: str, listed: Iterable[Mapping[str, Any]]) -> None:
        """After a LIST of the group: keep what it returned (unless the cache has newer),
        drop what it did not. Called within the group's pass, which makes the group's
        own writes, so nothing of ours is dropped; another writer's create that the
        LIST just missed is dropped until its watch event (a create of ours on that
        name then fails with AlreadyExists, and the pass reads again)."""
        names = set()
        for obj in listed:
            if self.group_of(obj) != group:
                continue  # found by name, without our labels: not watched, so not kept
            self.upsert(obj)
            names.add((obj.get("metadata") or {}).get("name"))
        for name in [n for n in self._groups.get((namespace, group), {}) if n not in names]:
            self.remove(namespace, name)

    def forget(self, namespace: str, group: str) -> None:
        """The pipeline is gone: its names seen (its objects go with their DELETED events)."""
        self._seen.pop((namespace, group), None)

    def _unlink(self, key: tuple[str, str], group: str | None) -> None:
        if group is None:
            return
        members = self._groups.get((key[0], group))
        if members is not None:
            members.pop(key[1], None)
            if not members:
                del self._groups[(key[0], group)]

    def _bury(self, key: tuple[str, str], rv: int | None) -> None:
        now = self.clock()
        self._tombstones.pop(key, None)
        self._tombstones[key] = (rv, now)
        while self._tombstones:
            oldest_key, (_, at) = next(iter(self._tombstones.items()))
            if now - at < self.tombstone_seconds:
                break
            del self._tombstones[oldest_key]


@dataclass
class WatchCache:
    """The operator's Deployments and pods, fed by the watch handlers.

    `primed`: the watches' initial lists are in. Until then the passes LIST as before.
    kopf holds every event handler until its indexing handlers have seen the initial
    list of each indexed kind (handlers.py feeds the cache from those), so the first
    event handler that runs may set it."""

    clock: Callable[[], float] = time.monotonic
    primed: bool = False
    epoch: int = 0  # bumped by a watch's list after the first (see the module's docstring)
    deployments: Store = field(init=False)
    pods: Store = field(init=False)
    # The pipelines as their watch delivered them (and our writes' answers): only those
    # the watch delivered; a pass reads the pipeline from here instead of a GET.
    pipelines: Store = field(init=False)

    def __post_init__(self) -> None:
        self.deployments = Store(owner_of, slim_deployment, self.clock, packed=True, track_seen=True)
        self.pods = Store(pod_group, slim_pod, self.clock, packed=True)
        self.pipelines = Store(_no_group, slim_pipeline, self.clock)

    def pipeline_written(self, obj: Any) -> None:
        """A write's answer (the pipeline as written): kept if the watch delivered the
        pipeline before (read-your-writes: the next pass must not see the copy from
        before the write)."""
        if isinstance(obj, dict):
            meta = obj.get("metadata") or {}
            if self.pipelines.get(meta.get("namespace") or "", str(meta.get("name"))) is not None:
                self.pipelines.upsert(obj)

    def inputs(self, namespace: str, pipeline: Mapping[str, Any], with_pods: bool) -> tuple[Any, ...]:
        """`inputs` of a pass that would read `pipeline` and the cache now."""
        name = str(pipeline["metadata"]["name"])
        rv = str((pipeline.get("metadata") or {}).get("resourceVersion"))
        pods = self.pods.versions(namespace, name) if with_pods else None
        return (rv, self.deployments.versions(namespace, name), pods)

    def relisted(self) -> None:
        """A watch delivered a listing's object (kopf's event type None) once primed:
        the watch had broken, objects deleted meanwhile may still be here."""
        if self.primed:
            self.epoch += 1

    def forget(self, namespace: str, pipeline: str) -> None:
        self.deployments.forget(namespace, pipeline)
        self.pods.forget(namespace, pipeline)
        self.pipelines.remove(namespace, pipeline)


def _no_group(_: Mapping[str, Any]) -> str | None:
    return None
