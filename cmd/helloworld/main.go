// Command helloworld is the walkthrough's sample service: GET /hello answers
// "Hello version: VERSION, instance: NAME". With -probe it is instead a
// test client that speaks TLS with a chosen SNI and ALPN and no client
// certificate, to show what a client outside the mesh gets.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", ":5000", "listen address")
	version := flag.String("version", "v1", "version to report")
	name := flag.String("instance", "", "instance name to report (default: hostname)")
	probe := flag.String("probe", "", "probe mode: host:port to connect to with TLS")
	sni := flag.String("sni", "", "probe: server name to send")
	alpn := flag.String("alpn", "istio", "probe: ALPN protocol to offer")
	cert := flag.String("cert", "", "probe: client certificate chain (PEM file)")
	key := flag.String("key", "", "probe: client key (PEM file)")
	flag.Parse()
	if *probe != "" {
		os.Exit(runProbe(*probe, *sni, *alpn, *cert, *key))
	}
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

// runProbe sends GET /hello over TLS (no client certificate, server not
// verified) and prints the answer; exit 0 only when one arrives.
func runProbe(addr, sni, alpn, certFile, keyFile string) int {
	cfg := &tls.Config{ServerName: sni, NextProtos: []string{alpn}, InsecureSkipVerify: true} //nolint:gosec // a probe
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			fmt.Println("probe:", err)
			return 2
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	conn, err := tls.DialWithDialer(&netDialer, "tcp", addr, cfg)
	if err != nil {
		fmt.Println("no answer:", err)
		return 1
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(conn, "GET /hello HTTP/1.1\r\nHost: helloworld.sample:5000\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(conn)
	if err != nil || len(b) == 0 {
		fmt.Println("no answer:", err)
		return 1
	}
	fmt.Print(string(b))
	return 0
}

var netDialer = net.Dialer{Timeout: 3 * time.Second}
