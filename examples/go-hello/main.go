// go-hello: example Go app for paas (go buildpack; standard library only, no Procfile:
// the default `web: /app/bin/go-hello` runs it). Change version and deploy again to see a
// new release.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

const (
	name    = "go-hello"
	version = "v1"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "5000"
	}
	log.SetFlags(0)
	log.SetOutput(os.Stdout)

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "Hello from %s %s (%s)\n", name, version, runtime.Version())
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	// One line per request, unless LOG_REQUESTS=false (benchmarks measure the proxy, not this).
	var handler http.Handler = mux
	if os.Getenv("LOG_REQUESTS") != "false" {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.Printf("%s %s %s", r.RemoteAddr, r.Method, r.URL.Path)
			mux.ServeHTTP(w, r)
		})
	}

	srv := &http.Server{Addr: "0.0.0.0:" + port, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Printf("signal received, exiting")
		shutdown, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()

	log.Printf("%s %s listening on %s", name, version, srv.Addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
