// Package buildinfo reports what binary is running: teeml's version, the Go
// toolchain and the VCS state embedded by the Go linker. Attestation makes the
// exact build matter, so `teeml version` prints all of it.
package buildinfo

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sort"
)

// Version is teeml's release version; overridden with
// -ldflags "-X github.com/teeml/teeml/internal/buildinfo.Version=v1.2.3".
var Version = "v0.1.0-dev"

// Info describes the running binary.
type Info struct {
	Version   string            `json:"version"`
	GoVersion string            `json:"go_version"`
	Platform  string            `json:"platform"`
	Module    string            `json:"module,omitempty"`
	Settings  map[string]string `json:"settings,omitempty"`
	// MLKernels names the matmul kernels of the ML backend (pure Go, or the
	// AVX2/AVX-512 kernels of a GOEXPERIMENT=simd build). Read leaves it
	// empty (this package does not link the ML stack); the caller fills it.
	MLKernels string `json:"ml_kernels,omitempty"`
}

// Read collects Info from the binary's embedded build information.
func Read() Info {
	info := Info{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.Module = bi.Main.Path
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Module += "@" + bi.Main.Version
		}
		info.Settings = map[string]string{}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision", "vcs.time", "vcs.modified", "CGO_ENABLED", "GOAMD64", "GOEXPERIMENT", "-race", "-tags", "-trimpath":
				info.Settings[s.Key] = s.Value
			}
		}
	}
	return info
}

// Write prints Info as "key: value" lines.
func (i Info) Write(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "teeml %s\ngo: %s\nplatform: %s\n", i.Version, i.GoVersion, i.Platform); err != nil {
		return err
	}
	if i.Module != "" {
		if _, err := fmt.Fprintf(w, "module: %s\n", i.Module); err != nil {
			return err
		}
	}
	if i.MLKernels != "" {
		if _, err := fmt.Fprintf(w, "ml kernels: %s\n", i.MLKernels); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(i.Settings))
	for k := range i.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := fmt.Fprintf(w, "build %s: %s\n", k, i.Settings[k]); err != nil {
			return err
		}
	}
	return nil
}
