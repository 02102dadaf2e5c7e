// Command coredns is CoreDNS with only the plugins this cluster uses. It has no
// forward plugin: names outside the cluster get no answer, so no pod's DNS query
// ever leaves the machine.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// The order in which the plugins handle a query (CoreDNS's plugin.cfg order).
	dnsserver.Directives = []string{"errors", "log", "health", "ready", "kubernetes", "cache", "loadbalance"}
}

func main() { coremain.Run() }
