package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"time"
)

// maxLine bounds what the echo server reads as one line.
const maxLine = 64 << 10

// tcpIdle closes an echo connection that sent nothing for that long.
const tcpIdle = 5 * time.Minute

// runTCPEcho serves the TCP echo: every line a client sends comes back
// prefixed with the server's NAME/VERSION ("hw2/v2 hello"), so a client
// can tell which instance answered.
func runTCPEcho(args []string) int {
	fs := flag.NewFlagSet("tcp-echo", flag.ContinueOnError)
	addr := fs.String("addr", ":9000", "listen address")
	prefix := fs.String("prefix", "", "what the answers start with (default NAME/VERSION), as istio/tcp-echo-server's second argument")
	var id identity
	id.flags(fs)
	if _, code := parse(fs, args, 0, "[flags]"); code != 0 {
		return code
	}
	if *prefix == "" {
		*prefix = id.String()
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Print(err)
		return 1
	}
	log.Printf("tcp-echo %s on %s", *prefix, l.Addr())
	log.Print(serveEcho(l, *prefix))
	return 1
}

// serveEcho echoes on l's connections until l fails.
func serveEcho(l net.Listener, prefix string) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go echo(c, prefix)
	}
}

func echo(c net.Conn, prefix string) {
	defer c.Close()
	r := bufio.NewScanner(c)
	r.Buffer(make([]byte, 4096), maxLine)
	for {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdle))
		if !r.Scan() {
			return
		}
		if _, err := fmt.Fprintf(c, "%s %s\n", prefix, r.Text()); err != nil {
			return
		}
	}
}

// runTCPEchoClient sends MSG as one line to ADDR and prints the line that
// comes back; exit 0 only when one does.
func runTCPEchoClient(args []string) int {
	fs := flag.NewFlagSet("tcp-echo-client", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	rest, code := parse(fs, args, 2, "[flags] ADDR MSG")
	if code != 0 {
		return code
	}
	addr, msg := rest[0], rest[1]
	if strings.ContainsAny(msg, "\r\n") {
		fmt.Fprintln(os.Stderr, "tcp-echo-client: MSG is one line")
		return 2
	}
	c, err := net.DialTimeout("tcp", addr, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcp-echo-client:", err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(*timeout))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		fmt.Fprintln(os.Stderr, "tcp-echo-client:", err)
		return 1
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("no answer from %s in %s", addr, *timeout)
		}
		fmt.Fprintln(os.Stderr, "tcp-echo-client:", err)
		return 1
	}
	fmt.Print(line)
	return 0
}
