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
