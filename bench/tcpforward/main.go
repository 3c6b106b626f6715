// Command tcpforward is the floor for the relay benchmarks: a TCP forwarder that opens one upstream connection
// per client connection and copies bytes both ways without looking at them. Any SMTP relay that opens its own
// upstream connection per session does at least this much work; the throughput script runs it beside the relay
// so the table shows how much of the gap to "direct" is the extra hop itself.
//
//	go run ./bench/tcpforward -listen 127.0.0.1:2601 -upstream 127.0.0.1:2526
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:2601", "address to listen on")
	upstream := flag.String("upstream", "127.0.0.1:2526", "upstream address")
	flag.Parse()
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpforward:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	d := net.Dialer{KeepAlive: -1}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "tcpforward:", err)
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			u, err := d.Dial("tcp", *upstream)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(u, c)
				u.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, u)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}
