// Command etcd is etcd's own server: etcd's server module replaces its sibling modules
// with local paths, so this wrapper names them at the server's version.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
