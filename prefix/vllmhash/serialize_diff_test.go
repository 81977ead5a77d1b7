package vllmhash

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// randCase is a random block tuple: a 16- or 32-byte parent, 0 to 40 tokens
// of every width, and random nested extra keys (or None).
type randCase struct {
	parent Digest
	tokens []uint32
	extra  []Key // nil: None
}

func randKey(r *rand.Rand, depth int) Key {
	switch n := r.IntN(12); {
	case n >= 10: // likely CPython singletons, and look-alikes that are not
		if n == 10 {
			return Str([]string{"", "a", "é", "✓", "ab"}[r.IntN(5)])
		}
		return Bytes([][]byte{{}, {0}, {0xff}, {1, 2}}[r.IntN(4)])
	case n < 3:
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = 'a' + byte(r.IntN(26))
		}
		if r.IntN(4) == 0 {
			return Str(string(b) + "é✓")
		}
		return Str(string(b))
	case n < 6:
		widths := []int64{1 << 7, 1 << 8, 1 << 16, 1 << 31, 1 << 40, 1 << 62}
		v := r.Int64N(widths[r.IntN(len(widths))])
		if r.IntN(2) == 0 {
			v = -v
		}
		return Int(v)
	case n < 8 || depth > 2:
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return Bytes(b)
	default:
		items := make([]Key, r.IntN(6))
		for i := range items {
			items[i] = randKey(r, depth+1)
		}
		return Tuple(items...)
	}
}

func randCases(n int) []randCase {
	r := rand.New(rand.NewPCG(7, 7))
	out := make([]randCase, n)
	for i := range out {
		pb := make([]byte, 16+16*r.IntN(2))
		for j := range pb {
			pb[j] = byte(r.IntN(256))
		}
		c := randCase{}
		c.parent, _ = DigestFromBytes(pb)
		widths := []uint32{1 << 7, 1 << 8, 1 << 16, 1 << 31, 1<<32 - 1}
		for range r.IntN(41) {
			c.tokens = append(c.tokens, r.Uint32N(widths[r.IntN(len(widths))]))
		}
		if r.IntN(4) != 0 {
			c.extra = make([]Key, r.IntN(5))
			for j := range c.extra {
				c.extra[j] = randKey(r, 0)
			}
		}
		out[i] = c
	}
	return out
}

func tagged(k Key) any {
	switch k.kind {
	case kindStr:
		return map[string]any{"s": k.s}
	case kindInt:
		return map[string]any{"i": k.i}
	case kindBytes:
		return map[string]any{"b": hex.EncodeToString([]byte(k.s))}
	case kindTuple:
		items := []any{}
		for _, it := range k.items {
			items = append(items, tagged(it))
		}
		return map[string]any{"t": items}
	}
	return nil
}

func plain(k Key) any {
	switch k.kind {
	case kindStr:
		return k.s
	case kindInt:
		return k.i
	case kindBytes:
		return []byte(k.s)
	case kindTuple:
		items := []any{}
		for _, it := range k.items {
			items = append(items, plain(it))
		}
		return items
	}
	return nil
}

// TestPickleDifferential compares the pickle serializer with CPython's on
// 1,000 random block tuples.
func TestPickleDifferential(t *testing.T) {
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs %s: %v", py, err)
		}
		t.Skipf("no %s", py)
	}
	cases := randCases(1000)
	var in bytes.Buffer
	for _, c := range cases {
		var extra any
		if c.extra != nil {
			extra = tagged(Tuple(c.extra...))
		}
		tokens := c.tokens
		if tokens == nil {
			tokens = []uint32{}
		}
		line, err := json.Marshal(map[string]any{"parent": c.parent.String(), "tokens": tokens, "extra": extra})
		require.NoError(t, err)
		in.Write(append(line, '\n'))
	}
	cmd := exec.Command(py, "testdata/pickle_cases.py")
	cmd.Stdin = &in
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for i, c := range cases {
		require.True(t, sc.Scan(), "python output ended at case %d", i)
		got := hex.EncodeToString(appendPickleBlock(nil, c.parent, c.tokens, c.extra))
		assert.Equal(t, strings.TrimSpace(sc.Text()), got, "case %d", i)
	}
}

// TestCBORDifferential compares the CBOR serializer with fxamacker/cbor's
// canonical encoder on the same random tuples.
func TestCBORDifferential(t *testing.T) {
	em, err := cbor.CanonicalEncOptions().EncMode()
	require.NoError(t, err)
	for i, c := range randCases(300) {
		var extra any
		if c.extra != nil {
			extra = plain(Tuple(c.extra...))
		}
		tokens := c.tokens
		if tokens == nil {
			tokens = []uint32{}
		}
		want, err := em.Marshal([]any{c.parent.Bytes(), tokens, extra})
		require.NoError(t, err)
		assert.Equal(t, hex.EncodeToString(want), hex.EncodeToString(appendCBORBlock(nil, c.parent, c.tokens, c.extra)), "case %d", i)
	}
}
