// Command helloworld is the walkthrough's sample service and the lab's
// stand-in for the samples' images:
//
//	helloworld [-addr :5000] [-version v1]      GET /hello answers "Hello version: VERSION, instance: NAME"
//	helloworld tcp-echo [-addr :9000]           echoes each line, prefixed with NAME/VERSION
//	helloworld grpc-health [-addr :50051]       the standard gRPC health service, SERVING
//	helloworld tcp-echo-client ADDR MSG         sends MSG, prints the echoed line
//	helloworld grpc-health-probe ADDR           asks grpc.health.v1.Health/Check, prints the status
//
// With -probe the HTTP server is instead a test client that speaks TLS with
// a chosen SNI and ALPN and no client certificate, to show what a client
// outside the mesh gets.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

// commands are the subcommands; without one, helloworld is the HTTP
// server (the flags the samples' images and the lab give it).
var commands = map[string]func(args []string) int{
	"tcp-echo":          runTCPEcho,
	"tcp-echo-client":   runTCPEchoClient,
	"grpc-health":       runGRPCHealth,
	"grpc-health-probe": runGRPCHealthProbe,
}

func main() {
	if len(os.Args) > 1 {
		if run, ok := commands[os.Args[1]]; ok {
			os.Exit(run(os.Args[2:]))
		}
	}
	addr := flag.String("addr", ":5000", "listen address")
	version := flag.String("version", "v1", "version to report")
	name := flag.String("instance", "", "instance name to report (default: hostname)")
	probe := flag.String("probe", "", "probe mode: host:port to connect to with TLS")
	sni := flag.String("sni", "", "probe: server name to send")
	alpn := flag.String("alpn", "istio", "probe: ALPN protocol to offer")
	cert := flag.String("cert", "", "probe: client certificate chain (PEM file)")
	key := flag.String("key", "", "probe: client key (PEM file)")
	tlsCert := flag.String("tls-cert", "", "serve HTTPS with this certificate chain (PEM file; with -tls-key)")
	tlsKey := flag.String("tls-key", "", "serve HTTPS with this key (PEM file)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "helloworld: unknown command %q (commands: tcp-echo, tcp-echo-client, grpc-health, grpc-health-probe)\n", flag.Arg(0))
		os.Exit(2)
	}
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
	if (*tlsCert == "") != (*tlsKey == "") {
		fmt.Fprintln(os.Stderr, "helloworld: -tls-cert and -tls-key go together")
		os.Exit(2)
	}
	if *tlsCert != "" {
		// An application's own TLS (an https port), which the mesh passes
		// through rather than terminates.
		log.Fatal(srv.ListenAndServeTLS(*tlsCert, *tlsKey))
	}
	log.Fatal(srv.ListenAndServe())
}

// identity is a server's NAME/VERSION, NAME the hostname unless given.
type identity struct{ name, version string }

func (id *identity) flags(fs *flag.FlagSet) {
	fs.StringVar(&id.version, "version", "v1", "version to report")
	fs.StringVar(&id.name, "instance", "", "instance name to report (default: hostname)")
}

func (id identity) String() string {
	name := id.name
	if name == "" {
		name, _ = os.Hostname()
	}
	return name + "/" + id.version
}

// parse parses a subcommand's flags; want is how many arguments it takes
// (its usage names them). Exit code 2 on a usage error, as flag does.
func parse(fs *flag.FlagSet, args []string, want int, usage string) ([]string, int) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: helloworld %s %s\n", fs.Name(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, 2
	}
	if fs.NArg() != want {
		fs.Usage()
		return nil, 2
	}
	return fs.Args(), 0
}
