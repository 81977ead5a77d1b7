package main

import (
	"encoding/json"
	"os"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestEnvoyConfig checks the sample envoy.yaml against Envoy's own API: every
// field name and type (protojson is strict), every validation rule of the
// protos, and the protocol settings the picker relies on.
func TestEnvoyConfig(t *testing.T) {
	raw, err := os.ReadFile("envoy.yaml")
	require.NoError(t, err)
	var doc any
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	js, err := json.Marshal(doc)
	require.NoError(t, err)
	var bs bootstrapv3.Bootstrap
	require.NoError(t, protojson.Unmarshal(js, &bs))
	require.NoError(t, bs.ValidateAll())

	var hcm hcmv3.HttpConnectionManager
	require.NoError(t, bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm))
	var ep extprocfilterv3.ExternalProcessor
	require.NoError(t, hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(&ep))
	pm := ep.GetProcessingMode()
	assert.Equal(t, "FULL_DUPLEX_STREAMED", pm.GetRequestBodyMode().String())
	assert.Equal(t, "FULL_DUPLEX_STREAMED", pm.GetResponseBodyMode().String())
	assert.Equal(t, "SEND", pm.GetRequestTrailerMode().String())
	assert.Equal(t, []string{metadataSubsetHint, metadataLB}, ep.GetMetadataOptions().GetForwardingNamespaces().GetUntyped())

	var servers *clusterv3.Cluster
	for _, c := range bs.GetStaticResources().GetClusters() {
		if c.GetName() == "model_servers" {
			servers = c
		}
	}
	require.NotNil(t, servers)
	assert.Equal(t, clusterv3.Cluster_ORIGINAL_DST, servers.GetType())
	assert.Equal(t, clusterv3.Cluster_CLUSTER_PROVIDED, servers.GetLbPolicy())
	assert.True(t, servers.GetOriginalDstLbConfig().GetUseHttpHeader())
	assert.Equal(t, headerDestination, servers.GetOriginalDstLbConfig().GetHttpHeaderName())
}
