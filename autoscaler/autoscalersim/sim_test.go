package autoscalersim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProfileQueueFleet(t *testing.T) {
	p, err := ProfileFleet(&QueueFleet{}, 30, 2*time.Minute)
	require.NoError(t, err)
	t.Logf("profile: %+v", p)
}
