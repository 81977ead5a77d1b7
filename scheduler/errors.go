package scheduler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors returned by [Scheduler.Schedule]. Each is wrapped with context;
// test with errors.Is. [HTTPStatus] and [DropReason] map them (and
// [*RejectError] from flow control) to what a gateway answers.
var (
	// ErrNoEndpoints means the candidate list was empty. The gateway should answer
	// 503; retrying is useful only once endpoints are discovered.
	ErrNoEndpoints = errors.New("scheduler: no endpoints")

	// ErrAllStale means every candidate's scraped metrics were older than the
	// staleness threshold and the stale policy excludes stale endpoints. The gateway
	// should answer 503 and check its metrics scraping.
	ErrAllStale = errors.New("scheduler: all endpoints have stale metrics")

	// ErrAllFiltered means a filter removed every remaining candidate (for example no
	// endpoint serves the model, role or labels asked for). The error names the
	// filter. The gateway should answer 503.
	ErrAllFiltered = errors.New("scheduler: all endpoints filtered out")

	// ErrBadScore means a scorer wrote NaN, an infinity or a value outside [0,1].
	// This is a bug in that scorer; the error is a [*ScoreError] naming it. The
	// gateway should answer 500. Scores are never clamped silently.
	ErrBadScore = errors.New("scheduler: score out of range")

	// ErrNoPrompt means the request carried no prompt: no token ids, no block keys
	// and no prompt length. The gateway should answer 400.
	ErrNoPrompt = errors.New("scheduler: request has no prompt")

	// ErrNoPick means the picker chose no endpoint from a non-empty candidate list,
	// a bug in that picker. The gateway should answer 500.
	ErrNoPick = errors.New("scheduler: picker chose no endpoint")
)

// ScoreError reports an invalid score from a scorer. It wraps [ErrBadScore].
// Like any error value, it is immutable once returned and safe for concurrent use.
type ScoreError struct {
	Scorer   string  // name of the scorer, see [WeightedScorer.Name]
	Endpoint string  // ID of the endpoint the score was for
	Value    float64 // the offending value
}

// Error implements error.
func (e *ScoreError) Error() string {
	return fmt.Sprintf("scheduler: scorer %q gave %v for endpoint %q, want a value in [0,1]", e.Scorer, e.Value, e.Endpoint)
}

// Unwrap returns [ErrBadScore].
func (e *ScoreError) Unwrap() error { return ErrBadScore }

// Reason is a machine-readable cause for a request that was not routed. Its value
// is suitable for a response header such as x-llm-d-request-dropped-reason. The
// strings are llm-d's for the same cause, with two deliberate refinements: a full
// flow-control queue is [ReasonQueueFull] (llm-d reports it as
// rejected-saturated, which hides whether the fleet or the queue bound is the
// limit), and a filter that removes every candidate is [ReasonNoEndpoints] with
// 503 (llm-d answers 429 rejected-saturated, but no amount of waiting helps a
// request no endpoint can serve). [ReasonBadRequest] has no llm-d counterpart.
// It is a plain value, safe to copy and to read from several goroutines.
type Reason string

// Reasons a request can be refused.
const (
	ReasonSaturated    Reason = "rejected-saturated"         // sheddable request while saturated (429)
	ReasonQueueFull    Reason = "rejected-queue-full"        // flow-control queue at its count or byte bound (429)
	ReasonTTLExpired   Reason = "rejected-ttl-expired"       // waited longer than its TTL (429)
	ReasonCancelled    Reason = "rejected-context-cancelled" // client went away while queued (499)
	ReasonShuttingDown Reason = "rejected-shutting-down"     // flow control closed (503)
	ReasonNoEndpoints  Reason = "rejected-no-endpoints"      // nothing to route to (503)
	ReasonBadRequest   Reason = "rejected-bad-request"       // request unusable, e.g. no prompt (400)
	ReasonInternal     Reason = "rejected-internal"          // plugin bug, e.g. a bad score (500)

)

// statusClientClosed is nginx's "client closed request" status.
const statusClientClosed = 499

// RejectError is returned by admission and flow control when a request is refused.
// It carries the reason and the HTTP status a gateway should answer with: 429 means
// back-pressure (retry later), 503 means nothing can serve it.
// Like any error value, it is immutable once returned and safe for concurrent use.
type RejectError struct {
	Reason Reason
	Status int   // HTTP status code
	Err    error // underlying cause, may be nil
}

// Error implements error.
func (e *RejectError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("scheduler: request rejected (%s): %v", e.Reason, e.Err)
	}
	return fmt.Sprintf("scheduler: request rejected (%s)", e.Reason)
}

// Unwrap returns the underlying cause.
func (e *RejectError) Unwrap() error { return e.Err }

func reject(r Reason, status int, err error) *RejectError {
	return &RejectError{Reason: r, Status: status, Err: err}
}

// HTTPStatus maps an error from this package to the HTTP status a gateway should
// answer with: 400 for [ErrNoPrompt], 503 for [ErrNoEndpoints], [ErrAllStale] and
// [ErrAllFiltered], 429 or 503 as carried by a [*RejectError], 499 when the client's
// context was cancelled, 504 on a deadline, and 500 otherwise (including
// [ErrBadScore], a plugin bug). A nil error maps to 200.
func HTTPStatus(err error) int {
	if err == nil {
		return http.StatusOK
	}
	if re, ok := errors.AsType[*RejectError](err); ok {
		return re.Status
	}
	switch {
	case errors.Is(err, ErrNoPrompt):
		return http.StatusBadRequest
	case errors.Is(err, ErrNoEndpoints), errors.Is(err, ErrAllStale), errors.Is(err, ErrAllFiltered):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return statusClientClosed
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// DropReason maps an error from this package to its [Reason], for a drop-reason
// response header. A nil error maps to "".
func DropReason(err error) Reason {
	if err == nil {
		return ""
	}
	if re, ok := errors.AsType[*RejectError](err); ok {
		return re.Reason
	}
	switch {
	case errors.Is(err, ErrNoPrompt):
		return ReasonBadRequest
	case errors.Is(err, ErrNoEndpoints), errors.Is(err, ErrAllStale), errors.Is(err, ErrAllFiltered):
		return ReasonNoEndpoints
	case errors.Is(err, context.Canceled):
		return ReasonCancelled
	}
	return ReasonInternal
}
