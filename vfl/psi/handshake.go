package psi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"

	psiv1 "github.com/teeml/teeml/api/proto/teeml/psi/v1"
)

// commitment is SHA-256("teeml-psi-v2 commit" || nonce).
func commitment(nonce []byte) []byte {
	h := sha256.Sum256(append([]byte(Version+" commit"), nonce...))
	return h[:]
}

func shortHex(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// checkHello compares the peer's Hello with this side's configuration.
func (s *session) checkHello(h *psiv1.Hello) error {
	if h == nil {
		return fmt.Errorf("psi: protocol: peer %q did not start with Hello", s.peer)
	}
	want := Follower
	if s.cfg.Role == Follower {
		want = Leader
	}
	switch {
	case h.GetVersion() != Version:
		return fmt.Errorf("psi: peer %q speaks %q, this side %q", s.peer, h.GetVersion(), Version)
	case Role(h.GetRole()) != want:
		return fmt.Errorf("psi: peer %q claims role %v, but this side is %v and needs a %v", s.peer, Role(h.GetRole()), s.cfg.Role, want)
	case Mode(h.GetMode()) != s.cfg.Mode:
		return fmt.Errorf("psi: peer %q runs mode %v, this side %v", s.peer, Mode(h.GetMode()), s.cfg.Mode)
	case h.GetConfigHash() != s.cfg.ConfigHash:
		return fmt.Errorf("psi: peer %q has config hash %s, this side %s", s.peer, shortHex(h.GetConfigHash()), shortHex(s.cfg.ConfigHash))
	case h.GetDigestLen() != DigestLen:
		return fmt.Errorf("psi: peer %q uses %d-byte digests, this side %d", s.peer, h.GetDigestLen(), DigestLen)
	}
	return nil
}

func (s *session) hello() *psiv1.Hello {
	return &psiv1.Hello{Version: Version, Role: psiv1.PSIRole(s.cfg.Role), Mode: psiv1.PSIMode(s.cfg.Mode),
		ConfigHash: s.cfg.ConfigHash, DigestLen: DigestLen}
}

// handshake runs commit-reveal of the two nonces and derives the session id
// and shuffle seed. The dialer commits to its nonce before it sees the
// listener's, and the listener sends its nonce before it sees the dialer's,
// so neither can steer the seed.
func (s *session) handshake() error {
	nonce := make([]byte, 32)
	if _, err := io.ReadFull(s.cfg.Rand, nonce); err != nil {
		return fmt.Errorf("psi: nonce: %w", err)
	}
	var peerNonce []byte
	if s.dialer {
		h := s.hello()
		h.Commit = commitment(nonce)
		if err := s.send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_Hello{Hello: h}}); err != nil {
			return err
		}
		m, err := s.recv("Hello")
		if err != nil {
			return err
		}
		if err := s.checkHello(m.GetHello()); err != nil {
			return err
		}
		if peerNonce = m.GetHello().GetNonce(); len(peerNonce) != 32 {
			return fmt.Errorf("psi: protocol: peer %q sent a %d-byte nonce", s.peer, len(peerNonce))
		}
		if err := s.send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_Reveal{Reveal: &psiv1.Reveal{Nonce: nonce}}}); err != nil {
			return err
		}
	} else {
		m, err := s.recv("Hello")
		if err != nil {
			return err
		}
		if err := s.checkHello(m.GetHello()); err != nil {
			return err
		}
		commit := m.GetHello().GetCommit()
		if len(commit) != sha256.Size {
			return fmt.Errorf("psi: protocol: peer %q sent a %d-byte commitment", s.peer, len(commit))
		}
		h := s.hello()
		h.Nonce = nonce
		if err := s.send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_Hello{Hello: h}}); err != nil {
			return err
		}
		if m, err = s.recv("Reveal"); err != nil {
			return err
		}
		if m.GetReveal() == nil {
			return fmt.Errorf("psi: protocol: expected Reveal from %q, got %T", s.peer, m.GetBody())
		}
		peerNonce = m.GetReveal().GetNonce()
		if len(peerNonce) != 32 || subtle.ConstantTimeCompare(commitment(peerNonce), commit) != 1 {
			return fmt.Errorf("psi: peer %q revealed a nonce that does not open its commitment", s.peer)
		}
	}
	leaderName, followerName, leaderNonce, followerNonce := s.cfg.Self, s.peer, nonce, peerNonce
	if s.cfg.Role == Follower {
		leaderName, followerName, leaderNonce, followerNonce = s.peer, s.cfg.Self, peerNonce, nonce
	}
	s.res.SessionID = SessionID(leaderName, followerName, s.cfg.Mode, s.cfg.ConfigHash, leaderNonce, followerNonce)
	s.res.ShuffleSeed = sha256.Sum256(append([]byte(Version+" shuffle seed"), s.res.SessionID[:]...))

	confirm := &psiv1.PSIMessage{Body: &psiv1.PSIMessage_Confirm{Confirm: &psiv1.Confirm{SessionId: s.res.SessionID[:]}}}
	check := func() error {
		m, err := s.recv("Confirm")
		if err != nil {
			return err
		}
		if m.GetConfirm() == nil {
			return fmt.Errorf("psi: protocol: expected Confirm from %q, got %T", s.peer, m.GetBody())
		}
		if subtle.ConstantTimeCompare(m.GetConfirm().GetSessionId(), s.res.SessionID[:]) != 1 {
			return fmt.Errorf("psi: peer %q derived another session id: the parties disagree on names (this side: leader %q, follower %q)", s.peer, leaderName, followerName)
		}
		return nil
	}
	if s.dialer {
		if err := check(); err != nil {
			return err
		}
		return s.send(confirm)
	}
	if err := s.send(confirm); err != nil {
		return err
	}
	return check()
}

// SessionID is SHA-256 over the protocol version, both attested names,
// mode, configuration hash and both nonces, each length-prefixed.
func SessionID(leader, follower string, mode Mode, configHash string, leaderNonce, followerNonce []byte) [32]byte {
	h := sha256.New()
	for _, f := range [][]byte{[]byte(Version + " session"), []byte(leader), []byte(follower),
		{byte(mode)}, []byte(configHash), leaderNonce, followerNonce} {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(f)))
		h.Write(l[:])
		h.Write(f)
	}
	var id [32]byte
	h.Sum(id[:0])
	return id
}
