package vllmhash

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPickleEdges checks the pickle serializer against CPython's own output
// for integer widths, LONG1, nested and empty tuples, UTF-8, str/bytes
// widths, objects CPython writes outside frames, and multi-frame pickles
// (testdata/gen_pickle_edges.py).
func TestPickleEdges(t *testing.T) {
	raw, err := os.ReadFile("testdata/pickle_edges.json")
	require.NoError(t, err)
	var f struct {
		ParentHex string `json:"parent_hex"`
		Cases     map[string]struct {
			Tokens json.RawMessage `json:"tokens"`
			Extra  json.RawMessage `json:"extra"`
			Len    int             `json:"len"`
			SHA256 string          `json:"sha256"`
			Hex    string          `json:"hex"`
		} `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(raw, &f))
	pb, err := hex.DecodeString(f.ParentHex)
	require.NoError(t, err)
	parent, err := DigestFromBytes(pb)
	require.NoError(t, err)
	require.NotEmpty(t, f.Cases)
	for name, c := range f.Cases {
		t.Run(name, func(t *testing.T) {
			tokens := decodeTokens(t, c.Tokens)
			var extra []Key
			var ev any
			dec := json.NewDecoder(bytes.NewReader(c.Extra))
			dec.UseNumber()
			require.NoError(t, dec.Decode(&ev))
			if ev != nil {
				extra = decodeEdgeKey(t, ev).items
				if extra == nil {
					extra = []Key{}
				}
			}
			got := appendPickleBlock(nil, parent, tokens, extra)
			if c.Hex != "" {
				assert.Equal(t, c.Hex, hex.EncodeToString(got))
			}
			assert.Len(t, got, c.Len)
			sum := sha256.Sum256(got)
			assert.Equal(t, c.SHA256, hex.EncodeToString(sum[:]))
		})
	}
}

func decodeTokens(t *testing.T, raw json.RawMessage) []uint32 {
	var list []uint32
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var r struct {
		Range [2]uint32 `json:"range"`
	}
	require.NoError(t, json.Unmarshal(raw, &r))
	for i := range r.Range[1] {
		list = append(list, r.Range[0]+i)
	}
	return list
}

func decodeEdgeKey(t *testing.T, v any) Key {
	if v == nil {
		return Key{}
	}
	m := v.(map[string]any)
	switch {
	case m["s"] != nil:
		return Str(m["s"].(string))
	case m["i"] != nil:
		n, err := m["i"].(json.Number).Int64()
		require.NoError(t, err)
		return Int(n)
	case m["b"] != nil:
		b, err := hex.DecodeString(m["b"].(string))
		require.NoError(t, err)
		return Bytes(b)
	case m["s_rep"] != nil:
		r := m["s_rep"].([]any)
		n, _ := r[1].(json.Number).Int64()
		return Str(strings.Repeat(r[0].(string), int(n)))
	case m["b_rep"] != nil:
		r := m["b_rep"].([]any)
		b, _ := hex.DecodeString(r[0].(string))
		n, _ := r[1].(json.Number).Int64()
		return Bytes(bytes.Repeat(b, int(n)))
	case m["t"] != nil:
		items := []Key{}
		for _, it := range m["t"].([]any) {
			items = append(items, decodeEdgeKey(t, it))
		}
		return Tuple(items...)
	}
	t.Fatalf("bad edge key %v", v)
	return Key{}
}

// TestCBORMatchesFxamacker cross-checks the hand-written CBOR encoder with an
// independent canonical encoder on values covering every head width.
func TestCBORMatchesFxamacker(t *testing.T) {
	em, err := cbor.CanonicalEncOptions().EncMode()
	require.NoError(t, err)
	parent, err := DigestFromBytes(bytes.Repeat([]byte{0xab}, 16))
	require.NoError(t, err)
	tokens := []uint32{0, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1}
	tests := []struct {
		name  string
		extra []Key
		want  any
	}{
		{name: "none", extra: nil, want: nil},
		{name: "empty", extra: []Key{}, want: []any{}},
		{name: "ints", extra: []Key{Int(-1), Int(-24), Int(-25), Int(-256), Int(-257), Int(-65537), Int(-1 << 40), Int(1 << 40), Int(-1 << 63)},
			want: []any{-1, -24, -25, -256, -257, -65537, int64(-1 << 40), int64(1 << 40), int64(-1 << 63)}},
		{name: "strings", extra: []Key{Str(""), Str(strings.Repeat("a", 24)), Str(strings.Repeat("é", 200)), Str(strings.Repeat("b", 70000))},
			want: []any{"", strings.Repeat("a", 24), strings.Repeat("é", 200), strings.Repeat("b", 70000)}},
		{name: "bytes_and_tuples", extra: []Key{Bytes([]byte{1, 2}), Tuple(Str("id"), Int(-12)), Tuple()},
			want: []any{[]byte{1, 2}, []any{"id", -12}, []any{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := em.Marshal([]any{parent.Bytes(), tokens, tt.want})
			require.NoError(t, err)
			assert.Equal(t, hex.EncodeToString(want), hex.EncodeToString(appendCBORBlock(nil, parent, tokens, tt.extra)))
		})
	}
}

func TestPickleNoneHashInput(t *testing.T) {
	p := newPickler(nil)
	p.str("0")
	assert.Equal(t, "80059505000000000000008c0130942e", hex.EncodeToString(p.finish()))
	assert.Equal(t, "6130", hex.EncodeToString(appendCBORString(nil, "0")))
}
