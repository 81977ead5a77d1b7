package router

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// MetricsHandler serves m in the Prometheus text format.
func MetricsHandler(m *Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = m.WriteTo(w)
	})
}

// DecisionsHandler serves the recent decisions of l as JSON, newest first;
// ?n= limits how many.
func DecisionsHandler(l *DecisionLog) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recs := l.Recent()
		if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && n >= 0 && n < len(recs) {
			recs = recs[:n]
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"decisions": recs})
	})
}
