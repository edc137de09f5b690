// A Go HTTPS client for SniCheckIT: GETs a URL through an HTTP proxy with the standard library
// (net/http, which sends CONNECT and then the URL's host as the TLS server name), trusting only
// the given CA certificate. Prints the status and the body; exits 1 on any error.
//
// Usage: sni-go-client PROXY_URL CA_PEM_FILE URL
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: sni-go-client PROXY_URL CA_PEM_FILE URL")
		os.Exit(2)
	}
	proxy, err := url.Parse(os.Args[1])
	if err != nil {
		fail(err)
	}
	pem, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fail(fmt.Errorf("no certificate in %s", os.Args[2]))
	}
	client := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			Proxy:           http.ProxyURL(proxy),
			TLSClientConfig: &tls.Config{RootCAs: roots},
		},
	}
	res, err := client.Get(os.Args[3])
	if err != nil {
		fail(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		fail(err)
	}
	fmt.Printf("%d %s", res.StatusCode, body)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sni-go-client:", err)
	os.Exit(1)
}
