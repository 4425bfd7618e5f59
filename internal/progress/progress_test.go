package progress

import (
	"bytes"
	"strings"
	"testing"
)

func TestBarDrawsOnlyWhenEnabled(t *testing.T) {
	var on, off bytes.Buffer
	a := New(&on, "epoch 1/3", 10, true)
	b := New(&off, "epoch 1/3", 10, false)
	for i := 1; i <= 10; i++ {
		a.Set(i)
		b.Set(i)
	}
	a.Finish()
	b.Finish()
	if off.Len() != 0 {
		t.Fatalf("disabled bar wrote %q", off.String())
	}
	if !strings.Contains(on.String(), "100% 10/10") {
		t.Fatalf("enabled bar never drew the final state: %q", on.String())
	}
}

func TestRenderFraction(t *testing.T) {
	b := New(&bytes.Buffer{}, "x", 4, false)
	b.Set(1)
	if s := b.String(); !strings.Contains(s, " 25% 1/4") || !strings.Contains(s, "[=======") {
		t.Fatalf("render = %q", s)
	}
}
