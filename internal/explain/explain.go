// Package explain makes errors that say what went wrong in their own words
// while errors.Is and errors.As still see the error they stand for: a
// sentinel, or the cause (an *fs.PathError, say) whose message would only
// repeat or confuse.
package explain

import "fmt"

type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// Errorf returns an error with the message fmt.Sprintf(format, args...)
// that unwraps to err.
func Errorf(err error, format string, args ...any) error {
	return &explained{msg: fmt.Sprintf(format, args...), err: err}
}
