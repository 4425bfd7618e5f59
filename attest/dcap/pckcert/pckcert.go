// Package pckcert parses the Intel SGX extension (OID 1.2.840.113741.1.13.1)
// of PCK certificates: PPID, TCB (16 component SVNs, PCESVN, CPUSVN), PCE-ID,
// FMSPC, SGX type and, for platform CA certificates, the platform instance
// ID and configuration.
package pckcert

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// OIDs of the SGX extension and its members.
var (
	OIDSGXExtension       = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	OIDPPID               = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 1}
	OIDTCB                = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2}
	OIDPCEID              = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 3}
	OIDFMSPC              = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
	OIDSGXType            = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	OIDPlatformInstanceID = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 6}
	OIDConfiguration      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7}
)

// Sizes of the fixed-length members.
const (
	PPIDSize  = 16
	CPUSVNLen = 16
	PCEIDSize = 2
	FMSPCSize = 6
)

// TCB is the PCK certificate's TCB: the 16 SGX TCB component SVNs (OIDs
// ...13.1.2.1 to .16), the PCESVN (.17) and the raw CPUSVN (.18).
type TCB struct {
	CompSVN [16]uint8
	PCESVN  uint16
	CPUSVN  [CPUSVNLen]byte
}

// Extensions are the decoded members of the SGX extension.
type Extensions struct {
	PPID  []byte
	TCB   TCB
	PCEID [PCEIDSize]byte
	FMSPC [FMSPCSize]byte
	// SGXType is 0 (Standard), 1 (Scalable) or 2 (Scalable with integrity).
	SGXType int
	// PlatformInstanceID and Configuration are present in certificates
	// issued by the PCK Platform CA only.
	PlatformInstanceID []byte
	Configuration      *Configuration
}

// Configuration is the optional platform configuration member.
type Configuration struct {
	DynamicPlatform, CachedKeys, SMTEnabled *bool
}

// FMSPCHex returns the FMSPC as upper-case hex, as TCB Info spells it.
func (e *Extensions) FMSPCHex() string { return strings.ToUpper(hex.EncodeToString(e.FMSPC[:])) }

// PCEIDHex returns the PCE-ID as upper-case hex.
func (e *Extensions) PCEIDHex() string { return strings.ToUpper(hex.EncodeToString(e.PCEID[:])) }

// ErrNoSGXExtension is returned for certificates without the SGX extension.
var ErrNoSGXExtension = errors.New("pckcert: certificate has no SGX extension (1.2.840.113741.1.13.1)")

// ParseExtensions finds and decodes the SGX extension of cert.
func ParseExtensions(cert *x509.Certificate) (*Extensions, error) {
	var found []byte
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(OIDSGXExtension) {
			if found != nil {
				return nil, errors.New("pckcert: duplicate SGX extension")
			}
			found = ext.Value
			if found == nil {
				found = []byte{}
			}
		}
	}
	if found == nil {
		return nil, ErrNoSGXExtension
	}
	return ParseSGXExtension(found)
}

type member struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

func parseMembers(der []byte, what string) ([]member, error) {
	var ms []member
	rest, err := asn1.Unmarshal(der, &ms)
	if err != nil {
		return nil, fmt.Errorf("pckcert: %s: %w", what, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("pckcert: %s: %d trailing bytes", what, len(rest))
	}
	return ms, nil
}

func octets(m member, name string, size int) ([]byte, error) {
	var b []byte
	rest, err := asn1.Unmarshal(m.Value.FullBytes, &b)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("pckcert: %s: not an OCTET STRING", name)
	}
	if size >= 0 && len(b) != size {
		return nil, fmt.Errorf("pckcert: %s: %d bytes, want %d", name, len(b), size)
	}
	return b, nil
}

func integer(m member, name string, max int64) (int64, error) {
	var v int64
	rest, err := asn1.Unmarshal(m.Value.FullBytes, &v)
	if err != nil || len(rest) != 0 {
		return 0, fmt.Errorf("pckcert: %s: not an INTEGER", name)
	}
	if v < 0 || v > max {
		return 0, fmt.Errorf("pckcert: %s: value %d out of range [0, %d]", name, v, max)
	}
	return v, nil
}

// subIndex returns n if id is parent.n, or -1.
func subIndex(id, parent asn1.ObjectIdentifier) int {
	if len(id) != len(parent)+1 || !id[:len(parent)].Equal(parent) {
		return -1
	}
	return id[len(parent)]
}

// ParseSGXExtension decodes the DER value of the SGX extension: a SEQUENCE
// of (OID, value) pairs. PPID, TCB, PCE-ID, FMSPC and SGX type are required;
// duplicates are errors; unknown members are ignored.
func ParseSGXExtension(der []byte) (*Extensions, error) {
	ms, err := parseMembers(der, "SGX extension")
	if err != nil {
		return nil, err
	}
	e := &Extensions{}
	seen := map[int]bool{}
	for _, m := range ms {
		n := subIndex(m.ID, OIDSGXExtension)
		if n < 0 {
			continue
		}
		if seen[n] {
			return nil, fmt.Errorf("pckcert: duplicate SGX extension member %v", m.ID)
		}
		seen[n] = true
		switch n {
		case 1:
			if e.PPID, err = octets(m, "PPID", PPIDSize); err != nil {
				return nil, err
			}
		case 2:
			if e.TCB, err = parseTCB(m.Value.FullBytes); err != nil {
				return nil, err
			}
		case 3:
			b, err := octets(m, "PCE-ID", PCEIDSize)
			if err != nil {
				return nil, err
			}
			copy(e.PCEID[:], b)
		case 4:
			b, err := octets(m, "FMSPC", FMSPCSize)
			if err != nil {
				return nil, err
			}
			copy(e.FMSPC[:], b)
		case 5:
			var v asn1.Enumerated
			rest, err := asn1.Unmarshal(m.Value.FullBytes, &v)
			if err != nil || len(rest) != 0 {
				return nil, errors.New("pckcert: SGX type: not an ENUMERATED")
			}
			if v < 0 || v > 2 {
				return nil, fmt.Errorf("pckcert: SGX type: unknown value %d", v)
			}
			e.SGXType = int(v)
		case 6:
			if e.PlatformInstanceID, err = octets(m, "platform instance ID", -1); err != nil {
				return nil, err
			}
		case 7:
			if e.Configuration, err = parseConfiguration(m.Value.FullBytes); err != nil {
				return nil, err
			}
		}
	}
	for n, name := range []string{1: "PPID", 2: "TCB", 3: "PCE-ID", 4: "FMSPC", 5: "SGX type"} {
		if n > 0 && !seen[n] {
			return nil, fmt.Errorf("pckcert: SGX extension lacks %s", name)
		}
	}
	return e, nil
}

func parseTCB(der []byte) (TCB, error) {
	var t TCB
	ms, err := parseMembers(der, "TCB")
	if err != nil {
		return t, err
	}
	seen := map[int]bool{}
	for _, m := range ms {
		n := subIndex(m.ID, OIDTCB)
		if n < 0 {
			continue
		}
		if seen[n] {
			return t, fmt.Errorf("pckcert: TCB: duplicate member %v", m.ID)
		}
		seen[n] = true
		switch {
		case n >= 1 && n <= 16:
			v, err := integer(m, fmt.Sprintf("TCB component %d SVN", n), 255)
			if err != nil {
				return t, err
			}
			t.CompSVN[n-1] = uint8(v)
		case n == 17:
			v, err := integer(m, "PCESVN", 65535)
			if err != nil {
				return t, err
			}
			t.PCESVN = uint16(v)
		case n == 18:
			b, err := octets(m, "CPUSVN", CPUSVNLen)
			if err != nil {
				return t, err
			}
			copy(t.CPUSVN[:], b)
		}
	}
	for n := 1; n <= 18; n++ {
		if !seen[n] {
			return t, fmt.Errorf("pckcert: TCB lacks member %d", n)
		}
	}
	return t, nil
}

func parseConfiguration(der []byte) (*Configuration, error) {
	ms, err := parseMembers(der, "configuration")
	if err != nil {
		return nil, err
	}
	c := &Configuration{}
	for _, m := range ms {
		n := subIndex(m.ID, OIDConfiguration)
		var dst **bool
		switch n {
		case 1:
			dst = &c.DynamicPlatform
		case 2:
			dst = &c.CachedKeys
		case 3:
			dst = &c.SMTEnabled
		default:
			continue
		}
		if *dst != nil {
			return nil, fmt.Errorf("pckcert: configuration: duplicate member %v", m.ID)
		}
		var v bool
		rest, err := asn1.Unmarshal(m.Value.FullBytes, &v)
		if err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("pckcert: configuration member %v: not a BOOLEAN", m.ID)
		}
		*dst = &v
	}
	return c, nil
}
