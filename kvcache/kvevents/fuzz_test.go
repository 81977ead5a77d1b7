package kvevents_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/routekit/routekit/kvcache/kvevents"
)

// FuzzDecode: no input panics the decoder; whatever decodes re-encodes to
// bytes that decode to the same batch (a fixed point after one round).
func FuzzDecode(f *testing.F) {
	raw, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		f.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(raw, &g); err != nil {
		f.Fatal(err)
	}
	for _, p := range g.KVEvents.Profiles {
		b, _ := hex.DecodeString(p.PayloadHex)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add(futureEvent)
	f.Add([]byte{0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xdf, 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0x92, 0x00, 0x91, 0x92, 0xac, 'B', 'l', 'o', 'c', 'k', 'R', 'e', 'm', 'o', 'v', 'e', 'd', 0x91, 0xa2, '4', '2'})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var b kvevents.Batch
		if kvevents.Decode(payload, &b) != nil {
			return
		}
		for _, e := range b.Events {
			_, _ = kvevents.DecodeExtraKeys(e.ExtraKeys) // must not panic
		}
		for s := kvevents.ArrayV090; s <= kvevents.MapNewest; s++ {
			enc, err := kvevents.AppendBatch(nil, &b, s)
			if err != nil {
				t.Fatalf("%v: encode a decoded batch: %v", s, err)
			}
			var back kvevents.Batch
			if err := kvevents.Decode(enc, &back); err != nil {
				t.Fatalf("%v: decode our own encoding %x: %v", s, enc, err)
			}
			again, err := kvevents.AppendBatch(nil, &back, s)
			if err != nil || !bytes.Equal(enc, again) {
				t.Fatalf("%v: not a fixed point: %x vs %x (%v)", s, enc, again, err)
			}
		}
	})
}
