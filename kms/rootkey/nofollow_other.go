//go:build !unix

package rootkey

const syscallNoFollow = 0
