package vllmsim

import "math/bits"

// keyTable maps block keys to block ids: an open-addressing, linear-probing
// table with backward-shift deletion, sized once for at most n keys at load
// factor ≤ 1/2. It replaces a Go map on the simulator's hottest path
// (every block stored, evicted and looked up). Not safe for concurrent use.
type keyTable struct {
	keys  []uint64
	vals  []int32 // -1: empty slot
	shift uint
	mask  int
	n     int
}

func newKeyTable(maxKeys int) *keyTable {
	size := 1 << bits.Len(uint(2*max(maxKeys, 4)-1))
	t := &keyTable{keys: make([]uint64, size), vals: make([]int32, size),
		shift: uint(64 - bits.TrailingZeros(uint(size))), mask: size - 1}
	for i := range t.vals {
		t.vals[i] = -1
	}
	return t
}

func (t *keyTable) home(k uint64) int { return int((k * 0x9e3779b97f4a7c15) >> t.shift) }

func (t *keyTable) get(k uint64) (int32, bool) {
	for i := t.home(k); ; i = (i + 1) & t.mask {
		v := t.vals[i]
		if v < 0 {
			return 0, false
		}
		if t.keys[i] == k {
			return v, true
		}
	}
}

// put inserts or overwrites k. The caller keeps the number of keys within
// the table's sizing.
func (t *keyTable) put(k uint64, v int32) {
	for i := t.home(k); ; i = (i + 1) & t.mask {
		if t.vals[i] < 0 {
			t.keys[i], t.vals[i] = k, v
			t.n++
			return
		}
		if t.keys[i] == k {
			t.vals[i] = v
			return
		}
	}
}

func (t *keyTable) del(k uint64) {
	i := t.home(k)
	for {
		if t.vals[i] < 0 {
			return
		}
		if t.keys[i] == k {
			break
		}
		i = (i + 1) & t.mask
	}
	// Backward-shift: pull later entries of the probe run into the hole
	// unless their home lies cyclically in (hole, j].
	for j := (i + 1) & t.mask; t.vals[j] >= 0; j = (j + 1) & t.mask {
		h := t.home(t.keys[j])
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			t.keys[i], t.vals[i] = t.keys[j], t.vals[j]
			i = j
		}
	}
	t.vals[i] = -1
	t.n--
}

func (t *keyTable) clear() {
	for i := range t.vals {
		t.vals[i] = -1
	}
	t.n = 0
}

func (t *keyTable) rangeKeys(f func(k uint64) bool) {
	for i, v := range t.vals {
		if v >= 0 && !f(t.keys[i]) {
			return
		}
	}
}
