package scheduler

import (
	"sync"

	"github.com/routekit/routekit/kvcache"
)

// KVIndex adapts a [kvcache.Index] to [PrefixIndex]. One Lookup per decision
// walks the request's block keys once for all candidates. Tiers map onto
// [PrefixMatch] as: kvcache GPU and learned (presumed in GPU after a routing
// decision) → GPU; CPU → CPU; local disk and shared storage → Storage. Lookup
// errors cannot happen with the adapter's own scratch; should one occur the
// matches stay zero (routing continues on load alone). It does not allocate in
// steady state and is safe for concurrent use.
func KVIndex(idx *kvcache.Index) PrefixIndex { return &kvIndex{idx: idx} }

type kvIndex struct {
	idx     *kvcache.Index
	scratch sync.Pool // *kvScratch
}

type kvScratch struct {
	ids []string
	out []kvcache.Match
}

func (k *kvIndex) Name() string { return "kvcache" }

func (k *kvIndex) Match(req *Request, cands []Candidate) {
	sc, _ := k.scratch.Get().(*kvScratch)
	if sc == nil {
		sc = new(kvScratch)
	}
	sc.ids = sc.ids[:0]
	for i := range cands {
		sc.ids = append(sc.ids, cands[i].ID)
	}
	sc.out = grow(sc.out, len(cands))
	if _, err := k.idx.Lookup(req.BlockKeys, sc.ids, sc.out); err == nil {
		for i := range cands {
			b := &sc.out[i].Blocks
			g := int(b[kvcache.TierGPU]) + int(b[kvcache.TierLearned])
			c := int(b[kvcache.TierCPU])
			s := int(b[kvcache.TierDisk]) + int(b[kvcache.TierShared])
			cands[i].Prefix = PrefixMatch{Blocks: g + c + s, GPU: g, CPU: c, Storage: s}
		}
	}
	clear(sc.ids) // do not pin endpoint IDs
	k.scratch.Put(sc)
}
