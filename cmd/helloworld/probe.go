package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"
)

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
