{{- define "modelship.name" -}}modelship{{- end -}}
{{- define "modelship.fullname" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- define "modelship.labels" -}}
app.kubernetes.io/name: modelship
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "modelship.selectorLabels" -}}
app.kubernetes.io/name: modelship
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}
{{- define "modelship.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "modelship.serviceAccountName" -}}{{ include "modelship.fullname" . }}{{- end -}}
{{- /* An IP address as a string of 32 or 128 bits, for CIDR arithmetic, which Helm has no functions for.
     IPv6 groups are read as hex by int64 ("0x…"); IPv4 octets by atoi, which never reads them as octal. */ -}}
{{- define "modelship.ipBits" -}}
{{- $bits := "" -}}
{{- if contains "." . -}}
{{- range splitList "." . }}{{ $bits = printf "%s%08b" $bits (atoi .) }}{{ end -}}
{{- else -}}
{{- $halves := splitList "::" . -}}
{{- $head := list -}}
{{- $tail := list -}}
{{- with index $halves 0 }}{{ $head = splitList ":" . }}{{ end -}}
{{- if gt (len $halves) 1 }}{{ with index $halves 1 }}{{ $tail = splitList ":" . }}{{ end }}{{ end -}}
{{- $groups := $head -}}
{{- range until (sub 8 (add (len $head) (len $tail)) | int) }}{{ $groups = append $groups "0" }}{{ end -}}
{{- range concat $groups $tail }}{{ $bits = printf "%s%016b" $bits (int64 (printf "0x%s" .)) }}{{ end -}}
{{- end -}}
{{- $bits -}}
{{- end -}}
{{- /* "true" when CIDR (index . 1) lies within CIDR (index . 0), equal included; "" otherwise. */ -}}
{{- define "modelship.cidrWithin" -}}
{{- $outer := splitList "/" (index . 0) -}}
{{- $inner := splitList "/" (index . 1) -}}
{{- $outerBits := include "modelship.ipBits" (index $outer 0) -}}
{{- $innerBits := include "modelship.ipBits" (index $inner 0) -}}
{{- $outerPrefix := atoi (index $outer 1) -}}
{{- if and (eq (len $outerBits) (len $innerBits)) (ge (atoi (index $inner 1)) $outerPrefix) (eq (substr 0 $outerPrefix $outerBits) (substr 0 $outerPrefix $innerBits)) }}true{{ end -}}
{{- end -}}
{{- /* Fails the render on a CIDR with bits set beyond its prefix (10.0.0.1/8): the apiserver refuses
     those in a NetworkPolicy, and a reader cannot tell which network was meant. */ -}}
{{- define "modelship.validateCIDRs" -}}
{{- $all := concat (.Values.outbound.allow | default list) (.Values.outbound.deny | default list) (.Values.networkPolicy.egress.apiServerCIDRs | default list) -}}
{{- range $all }}
{{- if contains "/" . }}
{{- $parts := splitList "/" . }}
{{- $bits := include "modelship.ipBits" (index $parts 0) }}
{{- $rest := substr (atoi (index $parts 1)) (len $bits) $bits }}
{{- if ne $rest (repeat (len $rest) "0") }}
{{- fail (printf "%s is no network address: it has bits set beyond /%s" . (index $parts 1)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
