package vllmsim_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/prefix/vllmhash"
)

// loraConfig is Fast with adapters a and b (ids 1 and 2).
func loraConfig(maxLoRAs int) vllmsim.Config {
	cfg := vllmsim.Fast()
	cfg.LoRA = &vllmsim.LoRAConfig{
		Adapters: []vllmsim.LoRA{{Name: "a", Path: "/adapters/a"}, {Name: "b"}},
		MaxLoRAs: maxLoRAs,
	}
	return cfg
}

func TestConfigLoRAValidation(t *testing.T) {
	tests := []struct {
		name    string
		give    *vllmsim.LoRAConfig
		wantErr bool
	}{
		{name: "off", give: nil},
		{name: "one adapter, default max", give: &vllmsim.LoRAConfig{Adapters: []vllmsim.LoRA{{Name: "a"}}}},
		{name: "two adapters, max 2", give: &vllmsim.LoRAConfig{Adapters: []vllmsim.LoRA{{Name: "a"}, {Name: "b"}}, MaxLoRAs: 2}},
		{name: "no adapters", give: &vllmsim.LoRAConfig{MaxLoRAs: 1}, wantErr: true},
		{name: "negative max", give: &vllmsim.LoRAConfig{Adapters: []vllmsim.LoRA{{Name: "a"}}, MaxLoRAs: -1}, wantErr: true},
		{name: "duplicate", give: &vllmsim.LoRAConfig{Adapters: []vllmsim.LoRA{{Name: "a"}, {Name: "b"}, {Name: "a"}}}, wantErr: true},
		{name: "base model name", give: &vllmsim.LoRAConfig{Adapters: []vllmsim.LoRA{{Name: "sim-model"}}}, wantErr: true},
		{name: "empty name", give: &vllmsim.LoRAConfig{Adapters: []vllmsim.LoRA{{Path: "/x"}}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := vllmsim.Fast()
			cfg.LoRA = tt.give
			var before vllmsim.LoRAConfig
			if tt.give != nil {
				before = *tt.give
			}
			eng, err := vllmsim.NewEngine(cfg)
			if tt.wantErr {
				require.ErrorIs(t, err, vllmsim.ErrBadConfig)
				return
			}
			require.NoError(t, err)
			if tt.give != nil {
				assert.Equal(t, max(tt.give.MaxLoRAs, 1), eng.Config().LoRA.MaxLoRAs)
				assert.Equal(t, before.MaxLoRAs, tt.give.MaxLoRAs, "the caller's LoRAConfig is not written")
			}
		})
	}
}

func TestConfigLoRANeedsLoRAHasher(t *testing.T) {
	h := vllmsim.BlockHasherFunc(func(p vllmsim.Hash, _ []uint32, _ string) vllmsim.Hash { return p })
	_, err := vllmsim.NewEngine(loraConfig(1), vllmsim.WithHasher(h))
	require.ErrorIs(t, err, vllmsim.ErrBadConfig)
}

func TestEngineUnknownLoRA(t *testing.T) {
	for _, cfg := range []vllmsim.Config{vllmsim.Fast(), loraConfig(1)} {
		eng, err := vllmsim.NewEngine(cfg)
		require.NoError(t, err)
		_, err = eng.Add(&vllmsim.Request{ID: "x", Prompt: seqTokens(8, 1), MaxTokens: 1, LoRA: "c"}, 0)
		assert.ErrorIs(t, err, vllmsim.ErrUnknownLoRA)
	}
}

// TestEngineMaxLoRAsAdmission follows vLLM V1's max_loras check: a waiting
// request whose adapter is not in the batch waits while the batch has
// MaxLoRAs adapters, without blocking the requests queued behind it.
func TestEngineMaxLoRAsAdmission(t *testing.T) {
	tests := []struct {
		name     string
		maxLoRAs int
		// after the first step
		wantRunning, wantWaiting        int
		wantRunningLoRAs, wantWaitLoRAs []string
	}{
		{name: "max 1: b waits", maxLoRAs: 1, wantRunning: 3, wantWaiting: 1, wantRunningLoRAs: []string{"a"}, wantWaitLoRAs: []string{"b"}},
		{name: "max 2: all run", maxLoRAs: 2, wantRunning: 4, wantRunningLoRAs: []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng, err := vllmsim.NewEngine(loraConfig(tt.maxLoRAs))
			require.NoError(t, err)
			var now time.Duration
			add := func(id, lora string, out int) *vllmsim.Seq {
				s, err := eng.Add(&vllmsim.Request{ID: id, Prompt: seqTokens(40, 1), MaxTokens: out, IgnoreEOS: true, LoRA: lora}, now)
				require.NoError(t, err)
				return s
			}
			// Queue order: a1, b1, base, a2; b1 is the one that may wait.
			a1, b1, base, a2 := add("a1", "a", 10), add("b1", "b", 2), add("base", "", 2), add("a2", "a", 20)
			d, ok := eng.Schedule(now)
			require.True(t, ok)
			now += d
			eng.Complete(now)
			st := eng.Stats()
			assert.Equal(t, tt.wantRunning, st.Running)
			assert.Equal(t, tt.wantWaiting, st.Waiting)
			running, waiting := eng.LoRAs()
			assert.Equal(t, tt.wantRunningLoRAs, running)
			assert.Equal(t, tt.wantWaitLoRAs, waiting)
			assert.Zero(t, base.Admitted, "the base-model request behind b1 is not blocked")
			assert.Zero(t, a2.Admitted, "a2 joins its adapter's batch")

			run(t, eng, &now, a1, b1, base, a2)
			if tt.maxLoRAs == 1 {
				assert.GreaterOrEqual(t, b1.Admitted, a2.LastToken, "b1 waits until every a request finished")
				assert.Less(t, base.LastToken, b1.Admitted)
			} else {
				assert.Zero(t, b1.Admitted)
			}
		})
	}
}

// TestEngineLoRABlockKeys checks that the adapter name is an extra key of
// every block, before the salt of the first, exactly as prefix/vllmhash
// computes vLLM's hashes, and that BlockStored carries it.
func TestEngineLoRABlockKeys(t *testing.T) {
	h, err := vllmhash.New(vllmhash.SHA256CBOR, "0")
	require.NoError(t, err)
	const bs = 16
	prompt := seqTokens(3*bs+5, 100)
	tests := []struct {
		name, lora, salt string
		wantID           int
	}{
		{name: "base"},
		{name: "a", lora: "a", wantID: 1},
		{name: "b", lora: "b", wantID: 2},
		{name: "a with salt", lora: "a", salt: "s", wantID: 1},
		{name: "salt", salt: "s"},
	}
	seen := map[uint64]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng, err := vllmsim.NewEngine(loraConfig(1), vllmsim.WithHasher(vllmsim.VLLMHasher(h)))
			require.NoError(t, err)
			extra := (&vllmhash.Request{LoRAName: tt.lora, CacheSalt: tt.salt}).ExtraKeys(3, bs)
			var want []uint64
			for _, d := range h.AppendBlockHashes(nil, vllmhash.Digest{}, prompt, bs, extra) {
				want = append(want, d.Uint64())
			}
			assert.Equal(t, want, eng.BlockKeys(nil, prompt, tt.lora, tt.salt))
			for _, k := range want {
				assert.NotContains(t, seen, k, "no block is shared across adapters and salts")
				seen[k] = tt.name
			}

			s, err := eng.Add(&vllmsim.Request{ID: "r", Prompt: prompt, MaxTokens: 1, LoRA: tt.lora, CacheSalt: tt.salt}, 0)
			require.NoError(t, err)
			_, ok := eng.Schedule(0)
			require.True(t, ok)
			out := eng.Complete(time.Millisecond)
			require.Len(t, out.Events, 1)
			ev := out.Events[0]
			assert.Equal(t, vllmsim.BlockStored, ev.Kind)
			assert.Equal(t, want, ev.Keys)
			assert.Equal(t, tt.lora, ev.LoRA)
			assert.Equal(t, tt.wantID, ev.LoRAID)
			assert.Equal(t, tt.salt, ev.Salt)
			assert.Equal(t, vllmsim.FinishLength, s.Finish())
		})
	}
}

func TestFastHasherLoRA(t *testing.T) {
	f := vllmsim.FastHasher{Seed: 7}
	toks := seqTokens(16, 1)
	base := f.HashBlock(vllmsim.Hash{}, toks, "x")
	assert.Equal(t, base, f.HashBlockLoRA(vllmsim.Hash{}, toks, "", "x"))
	a := f.HashBlockLoRA(vllmsim.Hash{}, toks, "a", "x")
	b := f.HashBlockLoRA(vllmsim.Hash{}, toks, "b", "x")
	assert.NotEqual(t, base, a)
	assert.NotEqual(t, a, b)
	assert.NotEqual(t, a, f.HashBlockLoRA(vllmsim.Hash{}, toks, "", "ax"))
}
