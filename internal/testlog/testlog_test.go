package testlog

import (
	"strings"
	"sync"
	"testing"
)

func TestBufferCollectsConcurrentLines(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Logger().Info("hello")
		}()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "msg=hello"); n != 8 {
		t.Fatalf("%d lines, want 8:\n%s", n, b.String())
	}
}
