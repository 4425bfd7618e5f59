//go:build unix

package rootkey

import "syscall"

// syscallNoFollow refuses a symbolic link as the key file, so the mode and
// size checks apply to the file actually read.
const syscallNoFollow = syscall.O_NOFOLLOW
