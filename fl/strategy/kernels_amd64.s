//go:build amd64 && !purego

#include "textflag.h"

// func wsumAVX(out []float32, xs [][]float32, c []float64, scale float64) (nonFinite bool)
//
// 16 coordinates per iteration in four float64 ymm accumulators. Client 0:
// acc = c0·x0; each further client k: acc = acc + c_k·x_k (a rounded
// multiply then a rounded add, never an FMA, to match the Go code). Then
// out = float32(acc·scale). Non-finite outputs are tracked by OR-ing v − v
// (0 for finite v, NaN otherwise) into X14.
TEXT ·wsumAVX(SB), NOSPLIT, $0-81
	MOVQ out_base+0(FP), DI
	MOVQ out_len+8(FP), CX
	MOVQ xs_base+24(FP), SI
	MOVQ xs_len+32(FP), R8
	MOVQ c_base+48(FP), R9
	VBROADCASTSD scale+72(FP), Y15
	VXORPS X14, X14, X14
	XORQ AX, AX

block:
	CMPQ AX, CX
	JGE  done
	MOVQ 0(SI), R10
	VBROADCASTSD 0(R9), Y12
	VCVTPS2PD 0(R10)(AX*4), Y0
	VCVTPS2PD 16(R10)(AX*4), Y1
	VCVTPS2PD 32(R10)(AX*4), Y2
	VCVTPS2PD 48(R10)(AX*4), Y3
	VMULPD Y12, Y0, Y0
	VMULPD Y12, Y1, Y1
	VMULPD Y12, Y2, Y2
	VMULPD Y12, Y3, Y3
	MOVQ $1, BX
	LEAQ 24(SI), R11
	LEAQ 8(R9), R12

client:
	CMPQ BX, R8
	JGE  finish
	MOVQ 0(R11), R10
	VBROADCASTSD 0(R12), Y12
	VCVTPS2PD 0(R10)(AX*4), Y4
	VCVTPS2PD 16(R10)(AX*4), Y5
	VCVTPS2PD 32(R10)(AX*4), Y6
	VCVTPS2PD 48(R10)(AX*4), Y7
	VMULPD Y12, Y4, Y4
	VMULPD Y12, Y5, Y5
	VMULPD Y12, Y6, Y6
	VMULPD Y12, Y7, Y7
	VADDPD Y4, Y0, Y0
	VADDPD Y5, Y1, Y1
	VADDPD Y6, Y2, Y2
	VADDPD Y7, Y3, Y3
	ADDQ $24, R11
	ADDQ $8, R12
	INCQ BX
	JMP  client

finish:
	VMULPD Y15, Y0, Y0
	VMULPD Y15, Y1, Y1
	VMULPD Y15, Y2, Y2
	VMULPD Y15, Y3, Y3
	VCVTPD2PSY Y0, X0
	VCVTPD2PSY Y1, X1
	VCVTPD2PSY Y2, X2
	VCVTPD2PSY Y3, X3
	VMOVUPS X0, 0(DI)(AX*4)
	VMOVUPS X1, 16(DI)(AX*4)
	VMOVUPS X2, 32(DI)(AX*4)
	VMOVUPS X3, 48(DI)(AX*4)
	VSUBPS X0, X0, X0
	VSUBPS X1, X1, X1
	VSUBPS X2, X2, X2
	VSUBPS X3, X3, X3
	VORPS  X0, X14, X14
	VORPS  X1, X14, X14
	VORPS  X2, X14, X14
	VORPS  X3, X14, X14
	ADDQ $16, AX
	JMP  block

done:
	VCMPPS $3, X14, X14, X14
	VMOVMSKPS X14, AX
	TESTL AX, AX
	SETNE nonFinite+80(FP)
	VZEROUPPER
	RET

// func sqDiffAVX(a, b []float32, s *[16]float64)
//
// For j < len(a) (a multiple of 16): s[j%16] += (float64(a[j]) − float64(b[j]))²,
// each square rounded before the add (no FMA), in increasing j per lane —
// the same operations as sqDiff's Go loop.
TEXT ·sqDiffAVX(SB), NOSPLIT, $0-56
	MOVQ a_base+0(FP), SI
	MOVQ a_len+8(FP), CX
	MOVQ b_base+24(FP), DI
	MOVQ s+48(FP), DX
	VMOVUPD 0(DX), Y0
	VMOVUPD 32(DX), Y1
	VMOVUPD 64(DX), Y2
	VMOVUPD 96(DX), Y3
	XORQ AX, AX

sqloop:
	CMPQ AX, CX
	JGE  sqdone
	VCVTPS2PD 0(SI)(AX*4), Y4
	VCVTPS2PD 16(SI)(AX*4), Y5
	VCVTPS2PD 32(SI)(AX*4), Y6
	VCVTPS2PD 48(SI)(AX*4), Y7
	VCVTPS2PD 0(DI)(AX*4), Y8
	VCVTPS2PD 16(DI)(AX*4), Y9
	VCVTPS2PD 32(DI)(AX*4), Y10
	VCVTPS2PD 48(DI)(AX*4), Y11
	VSUBPD Y8, Y4, Y4
	VSUBPD Y9, Y5, Y5
	VSUBPD Y10, Y6, Y6
	VSUBPD Y11, Y7, Y7
	VMULPD Y4, Y4, Y4
	VMULPD Y5, Y5, Y5
	VMULPD Y6, Y6, Y6
	VMULPD Y7, Y7, Y7
	VADDPD Y4, Y0, Y0
	VADDPD Y5, Y1, Y1
	VADDPD Y6, Y2, Y2
	VADDPD Y7, Y3, Y3
	ADDQ $16, AX
	JMP  sqloop

sqdone:
	VMOVUPD Y0, 0(DX)
	VMOVUPD Y1, 32(DX)
	VMOVUPD Y2, 64(DX)
	VMOVUPD Y3, 96(DX)
	VZEROUPPER
	RET

// func readSumAVX(x []float32) float32
//
// Sum of x (len a multiple of 32) in 4×8 float32 lanes: a minimal-work
// streaming read, used only by the memory-bandwidth reference benchmark.
TEXT ·readSumAVX(SB), NOSPLIT, $0-28
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ AX, AX

rsloop:
	CMPQ AX, CX
	JGE  rsdone
	VADDPS 0(SI)(AX*4), Y0, Y0
	VADDPS 32(SI)(AX*4), Y1, Y1
	VADDPS 64(SI)(AX*4), Y2, Y2
	VADDPS 96(SI)(AX*4), Y3, Y3
	ADDQ $32, AX
	JMP  rsloop

rsdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, ret+24(FP)
	VZEROUPPER
	RET
