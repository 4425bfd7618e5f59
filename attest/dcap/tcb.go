package dcap

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/pckcert"
)

// This file follows the TCB evaluation of Intel's Quote Verification
// Library (QVL): TCB levels in canonical descending order, platform level
// selection from the PCK certificate's TCB (and for TDX the TD report's
// TEE_TCB_SVN), TDX module identities, and convergence of platform, TDX
// module and QE statuses.

var knownPlatformStatus = map[string]bool{
	collateral.StatusUpToDate:                          true,
	collateral.StatusSWHardeningNeeded:                 true,
	collateral.StatusConfigurationNeeded:               true,
	collateral.StatusConfigurationAndSWHardeningNeeded: true,
	collateral.StatusOutOfDate:                         true,
	collateral.StatusOutOfDateConfigurationNeeded:      true,
	collateral.StatusRevoked:                           true,
}

var knownModuleStatus = map[string]bool{
	collateral.StatusUpToDate:  true,
	collateral.StatusOutOfDate: true,
	collateral.StatusRevoked:   true,
}

// canonicalLevels returns the TCB levels sorted the way Intel's QVL orders
// them: SGX component SVNs descending (lexicographically), then PCESVN
// descending, then (TDX) TDX component SVNs descending. The sort is stable,
// so of equal levels the first in the document wins, as in Intel's set.
func canonicalLevels(t *collateral.TCBInfo) []collateral.TCBLevel {
	levels := slices.Clone(t.TCBLevels)
	isTDX := t.ID == collateral.TCBInfoIDTDX
	svns := func(c *[16]collateral.TCBComponent) [16]uint8 {
		var out [16]uint8
		for i := range c {
			out[i] = c[i].SVN
		}
		return out
	}
	slices.SortStableFunc(levels, func(a, b collateral.TCBLevel) int {
		as, bs := svns(&a.SGXComponents), svns(&b.SGXComponents)
		if c := slices.Compare(bs[:], as[:]); c != 0 {
			return c
		}
		if c := cmp.Compare(b.PCESVN, a.PCESVN); c != 0 {
			return c
		}
		if isTDX {
			at, bt := svns(&a.TDXComponents), svns(&b.TDXComponents)
			return slices.Compare(bt[:], at[:])
		}
		return 0
	})
	return levels
}

func sgxLevelMatches(l *collateral.TCBLevel, tcb *pckcert.TCB) bool {
	for i := range l.SGXComponents {
		if tcb.CompSVN[i] < l.SGXComponents[i].SVN {
			return false
		}
	}
	return tcb.PCESVN >= l.PCESVN
}

// tdxLevelMatches compares TEE_TCB_SVN with the level's TDX components. When
// TEE_TCB_SVN[1] (the TDX module major version) is non-zero, components 0
// and 1 (module SVN and version) are evaluated through the TDX module
// identity instead, as in Intel's QVL.
func tdxLevelMatches(l *collateral.TCBLevel, teeTCBSVN *[16]byte) bool {
	start := 0
	if teeTCBSVN[1] > 0 {
		start = 2
	}
	for i := start; i < 16; i++ {
		if teeTCBSVN[i] < l.TDXComponents[i].SVN {
			return false
		}
	}
	return true
}

type statusResult struct {
	status     string
	advisories []string
}

// matchPlatformLevel selects the platform TCB level. For SGX it is the first
// level the PCK TCB meets; for TDX it is the first such level whose TDX
// components TEE_TCB_SVN also meets.
func matchPlatformLevel(levels []collateral.TCBLevel, tcb *pckcert.TCB, td *abi.TDReport10) (*collateral.TCBLevel, error) {
	sgxMatched := false
	for i := range levels {
		l := &levels[i]
		if !sgxLevelMatches(l, tcb) {
			continue
		}
		sgxMatched = true
		if td == nil {
			return l, nil
		}
		if tdxLevelMatches(l, &td.TEETCBSVN) {
			return l, nil
		}
	}
	if !sgxMatched {
		return nil, fmt.Errorf("%w: no TCB level for PCK TCB components %v PCESVN %d", ErrTCBNotSupported, tcb.CompSVN, tcb.PCESVN)
	}
	return nil, fmt.Errorf("%w: no TDX TCB level for TEE_TCB_SVN %x", ErrTCBNotSupported, td.TEETCBSVN)
}

// checkTDXModule checks the TD report's TDX module signer and SEAM
// attributes against TCB Info (the tdxModule, or for module major version
// TEE_TCB_SVN[1] > 0 the matching tdxModuleIdentities entry), and returns
// the module's TCB status (nil when no module identity applies).
func checkTDXModule(t *collateral.TCBInfo, quoteVersion uint16, td *abi.TDReport10) (*statusResult, error) {
	if t.TDXModule == nil {
		return nil, fmt.Errorf("TDX TCB Info has no tdxModule")
	}
	expected := t.TDXModule
	version, svn := td.TEETCBSVN[1], td.TEETCBSVN[0]
	var identity *collateral.TDXModuleIdentity
	if quoteVersion > abi.QuoteVersion3 && version > 0 {
		identity = t.FindTDXModuleIdentity(version)
		if identity == nil {
			return nil, fmt.Errorf("no TDX module identity TDX_%02X in TCB Info", version)
		}
		expected = &identity.TDXModule
	}
	if td.MRSignerSEAM != expected.MRSigner {
		return nil, fmt.Errorf("MRSIGNERSEAM %x does not match TDX module mrsigner %x", td.MRSignerSEAM, expected.MRSigner)
	}
	// Intel's QVL requires SEAMATTRIBUTES to be zero and equal to the
	// expected attributes.
	for i := range td.SEAMAttributes {
		if td.SEAMAttributes[i] != 0 || td.SEAMAttributes[i] != expected.Attributes[i] {
			return nil, fmt.Errorf("SEAMATTRIBUTES %x: must be zero and match TDX module attributes %x", td.SEAMAttributes, expected.Attributes)
		}
	}
	if identity == nil {
		return nil, nil
	}
	levels := slices.Clone(identity.TCBLevels)
	slices.SortStableFunc(levels, func(a, b collateral.TDXModuleTCBLevel) int { return cmp.Compare(b.ISVSVN, a.ISVSVN) })
	for _, l := range levels {
		if svn >= l.ISVSVN {
			if !knownModuleStatus[l.TCBStatus] {
				return nil, fmt.Errorf("TDX module %s TCB level isvsvn %d has unrecognised status %q", identity.ID, l.ISVSVN, l.TCBStatus)
			}
			return &statusResult{status: l.TCBStatus, advisories: l.AdvisoryIDs}, nil
		}
	}
	return nil, fmt.Errorf("%w: TDX module %s SVN %d is below every TCB level", ErrTCBNotSupported, identity.ID, svn)
}

// convergeOutOfDate folds an OutOfDate or Revoked status of a component (QE
// or TDX module) into the platform status, as Intel's QVL does.
func convergeOutOfDate(platform, component string) string {
	switch component {
	case collateral.StatusRevoked:
		return collateral.StatusRevoked
	case collateral.StatusOutOfDate:
		switch platform {
		case collateral.StatusUpToDate, collateral.StatusSWHardeningNeeded:
			return collateral.StatusOutOfDate
		case collateral.StatusConfigurationNeeded, collateral.StatusConfigurationAndSWHardeningNeeded:
			return collateral.StatusOutOfDateConfigurationNeeded
		}
	}
	return platform
}

// qeStatus normalises the QE identity level status the way Intel's QVL
// does: anything but UpToDate and Revoked counts as OutOfDate.
func qeStatus(s string) string {
	switch s {
	case collateral.StatusUpToDate, collateral.StatusRevoked:
		return s
	}
	return collateral.StatusOutOfDate
}

// matchQELevel returns the QE TCB level for the QE report's ISVSVN.
func matchQELevel(q *collateral.QEIdentity, isvsvn uint16) (*collateral.QETCBLevel, error) {
	levels := slices.Clone(q.TCBLevels)
	slices.SortStableFunc(levels, func(a, b collateral.QETCBLevel) int { return cmp.Compare(b.ISVSVN, a.ISVSVN) })
	for i := range levels {
		if isvsvn >= levels[i].ISVSVN {
			return &levels[i], nil
		}
	}
	return nil, fmt.Errorf("%w: QE ISVSVN %d is below every QE Identity TCB level", ErrTCBNotSupported, isvsvn)
}

func mergeAdvisories(lists ...[]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range lists {
		for _, a := range l {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}
