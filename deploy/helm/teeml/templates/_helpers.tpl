{{- define "teeml.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}

{{- define "teeml.labels" -}}
app.kubernetes.io/name: teeml
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .role }}
teeml.io/role: {{ .role }}
{{- end -}}

{{- define "teeml.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
teeml.io/role: {{ .role }}
{{- if .party }}
teeml.io/party: {{ .party }}
{{- end }}
{{- end -}}

{{/* The TEE a pod runs in: SGX device-plugin resources, or a confidential-VM runtime class. */}}
{{- define "teeml.teeResources" -}}
{{- if eq .Values.platform.kind "sgx" }}
sgx.intel.com/epc: {{ .Values.platform.sgx.epc | quote }}
sgx.intel.com/enclave: {{ .Values.platform.sgx.enclave }}
sgx.intel.com/provision: {{ .Values.platform.sgx.provision }}
{{- end }}
{{- end -}}

{{- define "teeml.podTEE" -}}
{{- if .Values.platform.runtimeClassName }}
runtimeClassName: {{ .Values.platform.runtimeClassName }}
{{- end }}
{{- with .Values.platform.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "teeml.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/* Identity files of one party, each mounted at its workspace path. */}}
{{- define "teeml.identityMounts" -}}
- name: identity
  mountPath: {{ .ws }}/pki/{{ .name }}.crt
  subPath: identity.crt
  readOnly: true
- name: identity
  mountPath: {{ .ws }}/pki/{{ .name }}-key.pem
  subPath: identity-key.pem
  readOnly: true
- name: identity
  mountPath: {{ .ws }}/party/{{ .name }}.yaml
  subPath: party.yaml
  readOnly: true
- name: state
  mountPath: {{ .ws }}/runs
  subPath: runs
- name: state
  mountPath: {{ .ws }}/save
  subPath: save
- name: state
  mountPath: /tmp
  subPath: tmp
{{- end -}}
