#!/usr/bin/env bash
# Builds kube-apiserver (k8s.io/kubernetes) and etcd from the Go module proxy into a
# cache directory, for the deploy/kubetest tests. Nothing fetched is committed: the
# sources live in the Go module cache and a throwaway module under a temp dir.
#
#   deploy/kubetest/build.sh [OUTDIR]
#
# OUTDIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/teeml/kube/<k8s version>.
# Binaries already present in OUTDIR are reused. Prints the OUTDIR on stdout.
#
# k8s.io/kubernetes's go.mod replaces every k8s.io/<staging> module with ./staging,
# so `go install k8s.io/kubernetes/cmd/kube-apiserver@v` refuses; the throwaway
# module below pins each staging module to the matching published v0.X.Y instead.
set -euo pipefail

K8S_VERSION=${TEEML_KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${TEEML_ETCD_VERSION:-v3.6.16}
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
OUT=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/teeml/kube/$K8S_VERSION}
mkdir -p "$OUT"

staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
  cloud-provider cluster-bootstrap code-generator component-base component-helpers
  controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
  endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
  kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission
  sample-apiserver sample-cli-plugin sample-controller streaming)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ ! -x "$OUT/kube-apiserver" ]]; then
  start=$(date +%s)
  mkdir "$tmp/k8s"
  {
    echo "module teeml.invalid/kubebuild"
    echo
    echo "go 1.26"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
    echo ")"
  } >"$tmp/k8s/go.mod"
  (
    cd "$tmp/k8s"
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" >&2
    minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    CGO_ENABLED=0 go build -trimpath -o "$OUT/kube-apiserver.tmp" \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
      k8s.io/kubernetes/cmd/kube-apiserver >&2
  )
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
  echo "kube-apiserver $K8S_VERSION built in $(( $(date +%s) - start ))s" >&2
fi

if [[ ! -x "$OUT/etcd" ]]; then
  start=$(date +%s)
  mkdir "$tmp/etcd"
  (
    cd "$tmp/etcd"
    printf 'module teeml.invalid/etcdbuild\n\ngo 1.26\n' >go.mod
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  )
  mv "$OUT/etcd.tmp" "$OUT/etcd"
  echo "etcd $ETCD_VERSION built in $(( $(date +%s) - start ))s" >&2
fi

echo "$OUT"
