package kvevents

import (
	"fmt"
	"strconv"
	"strings"
)

// OffsetEndpoint returns the ZeroMQ endpoint data-parallel rank rank uses,
// as vLLM's offset_endpoint_port computes it: the TCP port plus rank, or
// "_dp<rank>" appended to an inproc name. Rank 0 and other transports are
// unchanged.
func OffsetEndpoint(endpoint string, rank int) (string, error) {
	if rank == 0 || endpoint == "" {
		return endpoint, nil
	}
	if rank < 0 {
		return "", fmt.Errorf("kvevents: negative data-parallel rank %d", rank)
	}
	switch {
	case strings.Contains(endpoint, "inproc"):
		return fmt.Sprintf("%s_dp%d", endpoint, rank), nil
	case strings.Contains(endpoint, "tcp"):
		i := strings.LastIndexByte(endpoint, ':')
		if i < 0 {
			return "", fmt.Errorf("kvevents: endpoint %q has no port", endpoint)
		}
		port, err := strconv.Atoi(endpoint[i+1:])
		if err != nil {
			return "", fmt.Errorf("kvevents: endpoint %q: bad port: %w", endpoint, err)
		}
		if port == 0 {
			return endpoint, nil // ephemeral: nothing to offset
		}
		if port+rank > 65535 {
			return "", fmt.Errorf("kvevents: endpoint %q: port %d + rank %d overflows", endpoint, port, rank)
		}
		return endpoint[:i+1] + strconv.Itoa(port+rank), nil
	}
	return endpoint, nil
}

// ShouldBind reports whether vLLM's publisher binds endpoint (true) or
// connects to it (false): it binds when the endpoint contains "*" or "::"
// or uses the ipc or inproc transport. A publisher that connects expects
// the subscriber to bind.
func ShouldBind(endpoint string) bool {
	return strings.Contains(endpoint, "*") || strings.Contains(endpoint, "::") ||
		strings.HasPrefix(endpoint, "ipc://") || strings.HasPrefix(endpoint, "inproc://")
}

// EndSeq is the sequence number vLLM's replay socket sends after the last
// buffered batch: -1 as a signed 64-bit big-endian integer.
const EndSeq = ^uint64(0)
