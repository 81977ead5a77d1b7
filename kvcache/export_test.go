package kvcache

// SetJumpStride changes x's jump search stride, so that benchmarks compare
// both modes on one (expensive) index. Not safe during lookups.
func SetJumpStride(x *Index, stride int) { x.cfg.jump = stride }
