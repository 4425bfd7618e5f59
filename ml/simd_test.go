package ml

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// The build-tagged SIMDKernels const must agree with the GOEXPERIMENT the
// binary was built with (the kernels of github.com/gomlx/compute are under
// the same `amd64 && goexperiment.simd` constraint).
func TestSIMDKernelsMatchesBuild(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("no build information in this test binary")
	}
	exp := ""
	for _, s := range bi.Settings {
		if s.Key == "GOEXPERIMENT" {
			exp = s.Value
		}
	}
	want := runtime.GOARCH == "amd64" && strings.Contains(","+exp+",", ",simd,")
	if SIMDKernels != want {
		t.Fatalf("SIMDKernels = %v, but GOARCH=%s GOEXPERIMENT=%q", SIMDKernels, runtime.GOARCH, exp)
	}
	d := SIMDDescription()
	if SIMDKernels != strings.HasPrefix(d, "simd ") {
		t.Fatalf("SIMDDescription() = %q disagrees with SIMDKernels = %v", d, SIMDKernels)
	}
}
