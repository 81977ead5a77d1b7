package kvevents

import (
	"fmt"
	"io"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// WriteMetrics writes the Subscriber's Stats in the Prometheus text
// exposition format (counters routekit_kvevents_*_total, gauges for
// sources and lag), for an operator's /metrics handler.
func (s *Subscriber) WriteMetrics(w io.Writer) error {
	st := s.Stats()
	families := []struct {
		name, help string
		typ        dto.MetricType
		v          float64
	}{
		{"messages_total", "ZeroMQ messages received live.", dto.MetricType_COUNTER, float64(st.Messages)},
		{"batches_total", "Event batches decoded and applied.", dto.MetricType_COUNTER, float64(st.Batches)},
		{"events_applied_total", "Events applied to the index.", dto.MetricType_COUNTER, float64(st.EventsApplied)},
		{"events_skipped_total", "Events of unknown types or deliberately not indexed.", dto.MetricType_COUNTER, float64(st.EventsSkipped)},
		{"apply_errors_total", "Events the index failed to apply.", dto.MetricType_COUNTER, float64(st.ApplyErrors)},
		{"decode_errors_total", "Malformed messages and payloads skipped.", dto.MetricType_COUNTER, float64(st.DecodeErrors)},
		{"gaps_total", "Sequence gaps detected.", dto.MetricType_COUNTER, float64(st.Gaps)},
		{"missed_messages_total", "Messages missing in sequence gaps, before replay.", dto.MetricType_COUNTER, float64(st.MissedMessages)},
		{"replays_total", "Replay requests made.", dto.MetricType_COUNTER, float64(st.Replays)},
		{"replay_failures_total", "Replays that failed or could not reach back far enough.", dto.MetricType_COUNTER, float64(st.ReplayFailures)},
		{"replayed_messages_total", "Messages received through replay.", dto.MetricType_COUNTER, float64(st.ReplayedMessages)},
		{"resets_total", "Sequence resets (publisher restarts).", dto.MetricType_COUNTER, float64(st.Resets)},
		{"clears_total", "Sources cleared after a reset or an unrecoverable gap.", dto.MetricType_COUNTER, float64(st.Clears)},
		{"unknown_sources_total", "Messages whose topic resolved to no source.", dto.MetricType_COUNTER, float64(st.UnknownSources)},
		{"sources", "Subscribed sources.", dto.MetricType_GAUGE, float64(st.Sources)},
		{"lag_seconds", "Age of the last applied batch when applied.", dto.MetricType_GAUGE, st.Lag.Seconds()},
	}
	for _, f := range families {
		name := "routekit_kvevents_" + f.name
		m := &dto.Metric{}
		if f.typ == dto.MetricType_COUNTER {
			m.Counter = &dto.Counter{Value: &f.v}
		} else {
			m.Gauge = &dto.Gauge{Value: &f.v}
		}
		mf := &dto.MetricFamily{Name: &name, Help: &f.help, Type: &f.typ, Metric: []*dto.Metric{m}}
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return fmt.Errorf("kvevents: write metrics: %w", err)
		}
	}
	// Per-source gauges, labelled by source ID.
	s.mu.Lock()
	ids := make([]string, 0, len(s.sources))
	for id := range s.sources {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	lag := &dto.MetricFamily{Name: ptr("routekit_kvevents_source_lag_seconds"),
		Help: ptr("Age of the source's last applied batch when applied."), Type: dto.MetricType_GAUGE.Enum()}
	seq := &dto.MetricFamily{Name: ptr("routekit_kvevents_source_last_seq"),
		Help: ptr("Sequence number of the source's last applied message."), Type: dto.MetricType_GAUGE.Enum()}
	for _, id := range ids {
		ss, ok := s.SourceStats(id)
		if !ok {
			continue
		}
		label := []*dto.LabelPair{{Name: ptr("source"), Value: ptr(id)}}
		lag.Metric = append(lag.Metric, &dto.Metric{Label: label, Gauge: &dto.Gauge{Value: ptr(ss.Lag.Seconds())}})
		seq.Metric = append(seq.Metric, &dto.Metric{Label: label, Gauge: &dto.Gauge{Value: ptr(float64(ss.LastSeq))}})
	}
	for _, mf := range []*dto.MetricFamily{lag, seq} {
		if len(mf.Metric) == 0 {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return fmt.Errorf("kvevents: write metrics: %w", err)
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
