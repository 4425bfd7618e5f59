package pki

import (
	"fmt"
	"slices"
	"strings"
)

// Roles are the federation roles a member can be certified for.
var Roles = []string{"aggregator", "collaborator", "leader", "follower", "kms", "owner", "analytics", "serving"}

// CheckRole returns an error unless role is one of Roles.
func CheckRole(role string) error {
	if !slices.Contains(Roles, role) {
		return fmt.Errorf("unknown role %q (known: %s)", role, strings.Join(Roles, ", "))
	}
	return nil
}

// maxNameLen bounds member names; they become certificate CNs and appear in
// file names and logs.
const maxNameLen = 64

// CheckName returns an error unless name is a valid member name: 1 to 64
// characters of ASCII letters, digits, '.', '_' and '-', starting with a
// letter or digit.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("member name is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("member name %.20q… is %d bytes, at most %d", name, len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("member name %q: character %q at %d not allowed (letters, digits, '.', '_', '-'; first a letter or digit)", name, c, i)
		}
	}
	return nil
}
