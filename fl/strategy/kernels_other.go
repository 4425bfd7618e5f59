//go:build !amd64 || purego

package strategy

// useAVX is false without the amd64 assembly kernel.
var useAVX = false

func wsumAVX(out []float32, xs [][]float32, c []float64, scale float64) bool {
	panic("strategy: wsumAVX without amd64 assembly")
}

func sqDiffAVX(a, b []float32, s *[16]float64) {
	panic("strategy: sqDiffAVX without amd64 assembly")
}

func readSumAVX(x []float32) float32 {
	panic("strategy: readSumAVX without amd64 assembly")
}
