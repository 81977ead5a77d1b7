//go:build tools

// Package routekit pins, for the tools build tag only, modules that packages
// under construction will import, so that concurrent work agrees on versions.

package routekit

import (
	_ "github.com/dlclark/regexp2"
	_ "github.com/fxamacker/cbor/v2"
	_ "github.com/go-zeromq/zmq4"
	_ "github.com/prometheus/client_model/go"
	_ "github.com/prometheus/common/expfmt"
	_ "github.com/puzpuzpuz/xsync/v3"
	_ "github.com/stretchr/testify/assert"
	_ "github.com/stretchr/testify/require"
	_ "github.com/vmihailenco/msgpack/v5"
	_ "github.com/zeebo/xxh3"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/text/unicode/norm"
	_ "k8s.io/apimachinery/pkg/labels"
)
