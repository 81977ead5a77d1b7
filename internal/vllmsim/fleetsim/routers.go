package fleetsim

// Baseline routers, for sanity checks and as yardsticks beside the
// scheduler package's policies.

// Random routes uniformly at random (with State.Rand, so runs reproduce).
func Random() Router {
	return RouterFunc(func(_ *Request, st *State) *Replica {
		if len(st.Replicas) == 0 {
			return nil
		}
		return st.Replicas[st.Rand.IntN(len(st.Replicas))]
	})
}

// RoundRobin cycles through the routable replicas.
func RoundRobin() Router {
	next := 0
	return RouterFunc(func(_ *Request, st *State) *Replica {
		if len(st.Replicas) == 0 {
			return nil
		}
		r := st.Replicas[next%len(st.Replicas)]
		next++
		return r
	})
}

// LeastLoaded routes to the replica with the fewest in-flight requests
// (the router's own accounting), ties to the lowest ID.
func LeastLoaded() Router {
	return RouterFunc(func(_ *Request, st *State) *Replica {
		var best *Replica
		for _, r := range st.Replicas {
			if best == nil || r.InFlight() < best.InFlight() {
				best = r
			}
		}
		return best
	})
}

// PrefixOracle routes to the replica whose prefix cache holds the longest
// prefix of the request's blocks right now (perfect knowledge of every
// cache), breaking ties and capping imbalance by load: a replica whose
// in-flight count exceeds the least loaded one's by more than maxSkew is
// skipped (maxSkew <= 0 means no cap).
func PrefixOracle(maxSkew int) Router {
	return RouterFunc(func(req *Request, st *State) *Replica {
		minLoad := -1
		for _, r := range st.Replicas {
			if minLoad < 0 || r.InFlight() < minLoad {
				minLoad = r.InFlight()
			}
		}
		var best *Replica
		bestHit := -1
		for _, r := range st.Replicas {
			if maxSkew > 0 && r.InFlight() > minLoad+maxSkew {
				continue
			}
			hit := r.PrefixMatch(req.Keys)
			if hit > bestHit || (hit == bestHit && r.InFlight() < best.InFlight()) {
				best, bestHit = r, hit
			}
		}
		return best
	})
}
