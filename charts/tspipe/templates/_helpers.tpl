{{/*
The chart holds no object of its own: each template reads the install's objects from
files/manifests/ (a byte-for-byte copy of manifests/, made by `make chart`) and sets only
what a value changes. The default render is `kubectl kustomize manifests/` plus Helm's
labels (tests/install/test_chart_kube.py compares them object by object).
*/}}

{{/* The objects of one file under files/manifests/ (documents split at ---), as a list. */}}
{{- define "tspipe.objects" -}}
{{- $out := list -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" (.root.Files.Get (printf "files/manifests/%s" .path)) -1 -}}
{{- $o := fromYaml $doc -}}
{{- if $o.kind }}{{ $out = append $out $o }}{{ end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The one object of a file under files/manifests/. */}}
{{- define "tspipe.object" -}}
{{- $objs := include "tspipe.objects" . | fromJsonArray -}}
{{- if ne (len $objs) 1 }}{{ fail (printf "files/manifests/%s: expected one object, found %d" .path (len $objs)) }}{{ end -}}
{{- toJson (index $objs 0) -}}
{{- end -}}

{{/* An object as a YAML document, with Helm's labels (and extra ones) added. */}}
{{- define "tspipe.emit" -}}
{{- $o := .obj -}}
{{- $labels := dict "helm.sh/chart" (printf "%s-%s" .root.Chart.Name .root.Chart.Version)
      "app.kubernetes.io/managed-by" .root.Release.Service
      "app.kubernetes.io/instance" .root.Release.Name -}}
{{- $labels = merge (deepCopy (.extraLabels | default dict)) $labels -}}
{{- $_ := set $o.metadata "labels" (merge (deepCopy ($o.metadata.labels | default dict)) $labels) }}
---
{{ toYaml $o }}
{{- end -}}

{{/* The operator's ServiceAccount in every binding's subjects. */}}
{{- define "tspipe.bindServiceAccount" -}}
{{- range .obj.subjects }}{{ if eq .kind "ServiceAccount" }}{{ $_ := set . "name" $.root.Values.serviceAccount.name }}{{ end }}{{ end -}}
{{- end -}}

{{/* The value of the first operation of a JSON patch file under files/manifests/ (the
pod-proxy component's rule and argument), as {"v": value} (fromJson takes objects only). */}}
{{- define "tspipe.patchValue" -}}
{{- toJson (dict "v" (index (.root.Files.Get (printf "files/manifests/%s" .path) | fromYamlArray) 0).value) -}}
{{- end -}}

{{/* manifests/pod-proxy's rule in a ClusterRole or Role, with rbac.podProxy. */}}
{{- define "tspipe.podProxyRule" -}}
{{- if and .root.Values.rbac.podProxy (eq .obj.metadata.name "tspipe-operator") -}}
{{- $_ := set .obj "rules" (append .obj.rules (include "tspipe.patchValue" (dict "root" .root "path" "pod-proxy/rbac-patch.yaml") | fromJson).v) -}}
{{- end -}}
{{- end -}}

{{/* Checks of values that cannot work together. */}}
{{- define "tspipe.validate" -}}
{{- if lt (int .Values.replicas) 1 }}{{ fail "replicas: at least 1" }}{{ end -}}
{{- if and (gt (int .Values.replicas) 1) .Values.watchNamespaces -}}
{{- fail "replicas > 1 (kopf peering) needs the cluster-wide scope: leave watchNamespaces empty (as manifests/overlays/ha)" -}}
{{- end -}}
{{- if not (has .Values.logFormat (list "text" "json")) }}{{ fail "logFormat: text or json" }}{{ end -}}
{{- if not .Values.serviceAccount.name }}{{ fail "serviceAccount.name must be set" }}{{ end -}}
{{- end -}}
