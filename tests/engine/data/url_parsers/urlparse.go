// Go's net/url (the parser of net/http's client). stdin: one URL per line, base64 of its
// UTF-8. stdout: one JSON array per line, the [parser, scheme, host] reading (none if the
// URL does not parse or has no host).
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		raw, err := base64.StdEncoding.DecodeString(in.Text())
		if err != nil {
			panic(err)
		}
		readings := [][]string{}
		if u, err := url.Parse(string(raw)); err == nil && (u.Host != "" || u.Scheme != "") {
			readings = append(readings, []string{"go-net/url", u.Scheme, u.Hostname()})
		}
		if err := enc.Encode(readings); err != nil {
			panic(err)
		}
	}
}
