package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
)

// ep describes a test endpoint.
type ep struct {
	id       string
	role     pool.Role
	labels   map[string]string
	models   []string
	waiting  int
	running  int
	kv       float64
	kvTokens int
	inflight int // gateway in-flight requests
	tokens   int // of which uncached prompt tokens
	stale    bool
	lora     *pool.Metrics // LoRA fields, if set
	prefix   PrefixMatch
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fleet stores the endpoints in a new pool, sets their live state and returns
// them in the given order, with their prefix matches.
func fleet(t testing.TB, specs ...ep) ([]*pool.Endpoint, []Candidate) {
	t.Helper()
	p := pool.New()
	for i, s := range specs {
		if s.id == "" {
			s.id = fmt.Sprintf("e%d", i)
		}
		require.NoError(t, p.Store(pool.Endpoint{ID: s.id, Address: fmt.Sprintf("10.0.0.%d:8000", i+1), Role: s.role, Labels: s.labels, Models: s.models}))
	}
	eps := make([]*pool.Endpoint, 0, len(specs))
	cands := make([]Candidate, 0, len(specs))
	for i, s := range specs {
		id := s.id
		if id == "" {
			id = fmt.Sprintf("e%d", i)
		}
		e, ok := p.Load(id)
		require.True(t, ok)
		if !s.stale {
			m := pool.Metrics{Engine: pool.EngineVLLM, Waiting: s.waiting, Running: s.running, KVCacheUsage: s.kv, KVCacheTokens: s.kvTokens, ScrapedAt: t0}
			if s.lora != nil {
				m.Present |= pool.FieldLoRA
				m.MaxLoRA, m.RunningLoRAs, m.WaitingLoRAs = s.lora.MaxLoRA, s.lora.RunningLoRAs, s.lora.WaitingLoRAs
			}
			e.StoreMetrics(m)
		}
		for j := 0; j < s.inflight; j++ {
			tok := 0
			if j == 0 {
				tok = s.tokens
			}
			e.Dispatch(tok)
		}
		eps = append(eps, e)
		cands = append(cands, Candidate{Endpoint: e, Prefix: s.prefix})
	}
	return eps, cands
}

// keys returns n distinct block keys.
func keys(n int) []uint64 {
	k := make([]uint64, n)
	for i := range k {
		k[i] = mix(0x1234, i) | 1 // well spread, like real xxh3 keys
	}
	return k
}

// gpu is a prefix match of n GPU blocks.
func gpu(n int) PrefixMatch { return PrefixMatch{Blocks: n, GPU: n} }

// mapIndex is a PrefixIndex that returns fixed matches by endpoint ID.
type mapIndex map[string]PrefixMatch

func (m mapIndex) Match(_ *Request, cands []Candidate) {
	for i := range cands {
		cands[i].Prefix = m[cands[i].ID]
	}
}

func ids(cands []Candidate) []string {
	out := make([]string, len(cands))
	for i := range cands {
		out[i] = cands[i].ID
	}
	return out
}
