package privacy

import (
	"encoding/json"
	"math"
	"testing"
)

// FuzzStateJSON: decoding an accountant state never panics; a decoded state
// either restores into an accountant of its orders with the same ε, or is
// refused.
func FuzzStateJSON(f *testing.F) {
	acc, _ := NewAccountant(1.5, 2, 8, 64)
	_ = acc.Compose(0.1, 1.1, 5)
	b, _ := json.Marshal(acc.State())
	f.Add(b)
	f.Add([]byte(`{"orders":[2,3],"rdp":["inf",0.5],"steps":3}`))
	f.Add([]byte(`{"orders":[2],"rdp":[-1],"steps":1}`))
	f.Add([]byte(`{"orders":[0.5],"rdp":["nan"],"steps":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s State
		if err := json.Unmarshal(data, &s); err != nil {
			return
		}
		a, err := NewAccountant(s.Orders...)
		if err != nil || len(s.Orders) == 0 {
			return
		}
		if err := a.Restore(s); err != nil {
			return
		}
		e, err := a.Epsilon(1e-5)
		if err != nil {
			return
		}
		if math.IsNaN(e) || e < 0 {
			t.Fatalf("restored state gives ε %v", e)
		}
		again, err := json.Marshal(a.State())
		if err != nil {
			t.Fatalf("re-encoding a restored state: %v", err)
		}
		var s2 State
		if err := json.Unmarshal(again, &s2); err != nil {
			t.Fatalf("decoding a re-encoded state: %v", err)
		}
	})
}
