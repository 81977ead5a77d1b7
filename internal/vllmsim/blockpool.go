package vllmsim

// blockPool is vLLM's KV block pool: fixed physical blocks, a free queue in
// LRU order (blocks with no reference; the cached ones among them are
// evictable), and a map from block identity to the cached physical block.
// Not safe for concurrent use.
type blockPool struct {
	blocks []block
	// free queue: doubly linked through block.prev/next, head = next to
	// reuse (least recently freed), tail = most recently freed.
	head, tail int32
	numFree    int
	// cached maps a block key to the physical blocks holding it. Almost
	// always one block; a duplicate appears when two requests prefill the
	// same prefix at once (as in vLLM).
	cached *keyTable
	dups   map[uint64][]int32
	// evicted collects keys of cached blocks evicted by allocate, for
	// BlockRemoved events; the caller drains it.
	evicted []uint64
}

type block struct {
	key        uint64
	hashed     bool
	ref        int32
	prev, next int32
	inFree     bool
}

const nilBlock = -1

func newBlockPool(n int) *blockPool {
	p := &blockPool{
		blocks: make([]block, n),
		cached: newKeyTable(n),
		head:   nilBlock,
		tail:   nilBlock,
	}
	for i := range p.blocks {
		p.blocks[i] = block{prev: nilBlock, next: nilBlock}
		p.pushTail(int32(i))
	}
	return p
}

func (p *blockPool) pushTail(id int32) {
	b := &p.blocks[id]
	b.prev, b.next, b.inFree = p.tail, nilBlock, true
	if p.tail != nilBlock {
		p.blocks[p.tail].next = id
	} else {
		p.head = id
	}
	p.tail = id
	p.numFree++
}

func (p *blockPool) unlink(id int32) {
	b := &p.blocks[id]
	if b.prev != nilBlock {
		p.blocks[b.prev].next = b.next
	} else {
		p.head = b.next
	}
	if b.next != nilBlock {
		p.blocks[b.next].prev = b.prev
	} else {
		p.tail = b.prev
	}
	b.prev, b.next, b.inFree = nilBlock, nilBlock, false
	p.numFree--
}

// lookup returns the cached physical block holding key.
func (p *blockPool) lookup(key uint64) (int32, bool) {
	return p.cached.get(key)
}

// touch takes a reference on a cached block, removing it from the free
// queue if it was unreferenced.
func (p *blockPool) touch(id int32) {
	b := &p.blocks[id]
	if b.ref == 0 && b.inFree {
		p.unlink(id)
	}
	b.ref++
}

// allocate pops n blocks from the head of the free queue, evicting the
// cached identities they held. The caller has checked numFree >= n.
func (p *blockPool) allocate(dst []int32, n int) []int32 {
	for range n {
		id := p.head
		p.unlink(id)
		b := &p.blocks[id]
		if b.hashed {
			p.evicted = append(p.evicted, b.key)
			p.uncache(id)
		}
		b.ref = 1
		dst = append(dst, id)
	}
	return dst
}

func (p *blockPool) uncache(id int32) {
	b := &p.blocks[id]
	key := b.key
	b.hashed, b.key = false, 0
	if d, ok := p.dups[key]; ok {
		for i, x := range d {
			if x == id {
				d = append(d[:i], d[i+1:]...)
				break
			}
		}
		if cur, _ := p.cached.get(key); cur == id && len(d) > 0 {
			p.cached.put(key, d[len(d)-1])
			d = d[:len(d)-1]
		}
		if len(d) == 0 {
			delete(p.dups, key)
		} else {
			p.dups[key] = d
		}
		return
	}
	if cur, ok := p.cached.get(key); ok && cur == id {
		p.cached.del(key)
	}
}

// cache registers block id as holding key.
func (p *blockPool) cache(id int32, key uint64) {
	b := &p.blocks[id]
	if b.hashed {
		return
	}
	b.hashed, b.key = true, key
	if _, ok := p.cached.get(key); ok {
		if p.dups == nil {
			p.dups = make(map[uint64][]int32)
		}
		p.dups[key] = append(p.dups[key], id)
		return
	}
	p.cached.put(key, id)
}

// free drops one reference from each block, in reverse order, so that a
// request's tail blocks are evicted before its head blocks (as vLLM does).
func (p *blockPool) free(ids []int32) {
	for i := len(ids) - 1; i >= 0; i-- {
		id := ids[i]
		b := &p.blocks[id]
		b.ref--
		if b.ref == 0 {
			p.pushTail(id)
		}
	}
}

// clear drops every cached identity (reset_prefix_cache); referenced blocks
// stay allocated.
func (p *blockPool) clear() {
	for i := range p.blocks {
		p.blocks[i].hashed, p.blocks[i].key = false, 0
	}
	p.cached.clear()
	p.dups = nil
}

// usage returns the fraction of blocks that are referenced (vLLM's
// kv_cache_usage_perc: 1 - free/total).
func (p *blockPool) usage() float64 {
	return 1 - float64(p.numFree)/float64(len(p.blocks))
}
