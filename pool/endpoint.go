package pool

import (
	"fmt"
	"net"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/labels"
)

// Role is what an endpoint does in prefill/decode disaggregation.
// Role values are immutable and safe for concurrent use.
type Role uint8

const (
	// RoleBoth is an endpoint that serves whole requests (prefill and decode). It is
	// the zero value.
	RoleBoth Role = iota
	// RolePrefill is an endpoint that computes prompts (prefill) and hands the KV
	// cache over to a decode endpoint.
	RolePrefill
	// RoleDecode is an endpoint that generates tokens from a KV cache computed
	// elsewhere.
	RoleDecode
)

// String returns "both", "prefill" or "decode" (and "Role(n)" for invalid values).
func (r Role) String() string {
	switch r {
	case RoleBoth:
		return "both"
	case RolePrefill:
		return "prefill"
	case RoleDecode:
		return "decode"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// ParseRole parses "both", "prefill" or "decode"; the empty string is RoleBoth.
func ParseRole(s string) (Role, error) {
	switch s {
	case "", "both":
		return RoleBoth, nil
	case "prefill":
		return RolePrefill, nil
	case "decode":
		return RoleDecode, nil
	}
	return 0, fmt.Errorf("pool: unknown role %q (want both, prefill or decode)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (r Role) MarshalText() ([]byte, error) {
	if r > RoleDecode {
		return nil, fmt.Errorf("pool: invalid role %d", r)
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Endpoint is one model-server endpoint (one vLLM or SGLang API server, or one
// data-parallel rank of it) and, once it belongs to a [Pool], its live state.
//
// The exported fields describe the endpoint; callers fill them in and hand the
// value to [Pool.Store]. The pool keeps its own copy: the *Endpoint values found in
// a [Snapshot] are owned by the pool and their fields must not be modified. Their
// live state (scraped [Metrics], scrape [Status], in-flight [Load]) is read and
// updated through methods, all of which are safe for concurrent use and never
// allocate. On an Endpoint that was not obtained from a Pool the live-state
// methods report zero values and record nothing.
type Endpoint struct {
	// ID identifies the endpoint for its whole life in the pool, for example
	// "<namespace>/<pod>-rank-<n>". It must not be empty. Storing an endpoint
	// with an existing ID updates that endpoint and keeps its live state.
	ID string
	// Address is the "host:port" that requests are sent to.
	Address string
	// MetricsAddress is the "host:port" that serves /metrics, when it differs from
	// Address (a sidecar, a separate metrics port). Empty means Address.
	MetricsAddress string
	// Labels are Kubernetes-style labels, selected with k8s.io/apimachinery's
	// labels.Selector (see [Snapshot.Select]).
	Labels labels.Set
	// Role is the endpoint's role in prefill/decode disaggregation.
	Role Role
	// Models are the served model names (what clients put in "model").
	Models []string
	// LoRAAdapters are the LoRA adapters the endpoint can serve.
	LoRAAdapters []string
	// DPRank is the data-parallel rank this endpoint stands for (0 without data
	// parallelism). vLLM publishes KV events of rank r on its base port + r.
	DPRank int

	live *live // set by the pool; shared by every version of the same membership
}

// Validate reports whether e can be stored in a pool: a non-empty ID, a
// host:port Address (and MetricsAddress if set), a known Role and DPRank ≥ 0.
func (e *Endpoint) Validate() error {
	if e.ID == "" {
		return fmt.Errorf("pool: endpoint has an empty ID")
	}
	if err := checkHostPort(e.Address); err != nil {
		return fmt.Errorf("pool: endpoint %q: address: %w", e.ID, err)
	}
	if e.MetricsAddress != "" {
		if err := checkHostPort(e.MetricsAddress); err != nil {
			return fmt.Errorf("pool: endpoint %q: metrics address: %w", e.ID, err)
		}
	}
	if e.Role > RoleDecode {
		return fmt.Errorf("pool: endpoint %q: invalid role %d", e.ID, e.Role)
	}
	if e.DPRank < 0 {
		return fmt.Errorf("pool: endpoint %q: negative data-parallel rank %d", e.ID, e.DPRank)
	}
	return nil
}

func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q has no host", a)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("%q has an invalid port", a)
	}
	return nil
}

// ScrapeAddress returns MetricsAddress if set, otherwise Address.
func (e *Endpoint) ScrapeAddress() string {
	if e.MetricsAddress != "" {
		return e.MetricsAddress
	}
	return e.Address
}

// ServesModel reports whether model is one of e.Models or e.LoRAAdapters.
func (e *Endpoint) ServesModel(model string) bool {
	return slices.Contains(e.Models, model) || slices.Contains(e.LoRAAdapters, model)
}

// clone returns a deep copy of the descriptive fields, without live state.
func (e *Endpoint) clone() Endpoint {
	c := *e
	c.live = nil
	if e.Labels != nil {
		c.Labels = make(labels.Set, len(e.Labels))
		for k, v := range e.Labels {
			c.Labels[k] = v
		}
	}
	c.Models = slices.Clone(e.Models)
	c.LoRAAdapters = slices.Clone(e.LoRAAdapters)
	return c
}

// sameDescription reports whether a and b have equal descriptive fields.
func sameDescription(a, b *Endpoint) bool {
	return a.ID == b.ID && a.Address == b.Address && a.MetricsAddress == b.MetricsAddress &&
		a.Role == b.Role && a.DPRank == b.DPRank &&
		labels.Equals(a.Labels, b.Labels) &&
		slices.Equal(a.Models, b.Models) && slices.Equal(a.LoRAAdapters, b.LoRAAdapters)
}
