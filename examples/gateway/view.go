package main

import (
	"time"

	"github.com/routekit/routekit/pool"
)

// View is the JSON live view of a pool.
// It is plain data with no internal synchronisation: share it only read-only.
type View struct {
	Version   uint64         `json:"version"`
	Endpoints []EndpointView `json:"endpoints"`
}

// EndpointView is one endpoint in the live view.
// It is plain data with no internal synchronisation: share it only read-only.
type EndpointView struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Role     pool.Role         `json:"role"`
	Labels   map[string]string `json:"labels,omitempty"`
	Models   []string          `json:"models,omitempty"`
	DPRank   int               `json:"dp_rank"`
	Metrics  MetricsView       `json:"metrics"`
	Scrape   StatusView        `json:"scrape"`
	InFlight pool.Load         `json:"in_flight"`
}

// MetricsView is the last good scrape.
// It is plain data with no internal synchronisation: share it only read-only.
type MetricsView struct {
	Engine             pool.Engine `json:"engine"`
	Running            int         `json:"running"`
	Waiting            int         `json:"waiting"`
	KVCacheUsage       float64     `json:"kv_cache_usage"`
	BlockSize          int         `json:"block_size"`
	NumGPUBlocks       int         `json:"num_gpu_blocks"`
	KVCacheTokens      int         `json:"kv_cache_tokens"`
	PrefixCacheQueries float64     `json:"prefix_cache_queries"`
	PrefixCacheHits    float64     `json:"prefix_cache_hits"`
	RunningLoRAs       []string    `json:"running_loras,omitempty"`
	WaitingLoRAs       []string    `json:"waiting_loras,omitempty"`
	ScrapedAt          *time.Time  `json:"scraped_at"`
}

// StatusView is the scrape status.
// It is plain data with no internal synchronisation: share it only read-only.
type StatusView struct {
	Stale       bool       `json:"stale"`
	Error       string     `json:"error,omitempty"`
	Failures    int        `json:"failures"`
	LastSuccess *time.Time `json:"last_success"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func liveView(s *pool.Snapshot) View {
	v := View{Version: s.Version(), Endpoints: make([]EndpointView, 0, s.Len())}
	for _, e := range s.Endpoints() {
		m, st := e.Metrics(), e.Status()
		ev := EndpointView{
			ID: e.ID, Address: e.Address, Role: e.Role, Labels: e.Labels, Models: e.Models, DPRank: e.DPRank,
			Metrics: MetricsView{
				Engine: m.Engine, Running: m.Running, Waiting: m.Waiting, KVCacheUsage: m.KVCacheUsage,
				BlockSize: m.BlockSize, NumGPUBlocks: m.NumGPUBlocks, KVCacheTokens: m.KVCacheTokens,
				PrefixCacheQueries: m.PrefixCacheQueries, PrefixCacheHits: m.PrefixCacheHits,
				RunningLoRAs: m.RunningLoRAs, WaitingLoRAs: m.WaitingLoRAs, ScrapedAt: timePtr(m.ScrapedAt),
			},
			Scrape:   StatusView{Stale: st.Stale, Failures: st.Failures, LastSuccess: timePtr(st.LastSuccess)},
			InFlight: e.Load(),
		}
		if st.Err != nil {
			ev.Scrape.Error = st.Err.Error()
		}
		v.Endpoints = append(v.Endpoints, ev)
	}
	return v
}
