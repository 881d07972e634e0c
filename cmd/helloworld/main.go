// Command helloworld is the walkthrough's sample service: GET /hello answers
// "Hello version: VERSION, instance: NAME".
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", ":5000", "listen address")
	version := flag.String("version", "v1", "version to report")
	name := flag.String("instance", "", "instance name to report (default: hostname)")
	flag.Parse()
	if *name == "" {
		*name, _ = os.Hostname()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "Hello version: %s, instance: %s\n", *version, *name)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
