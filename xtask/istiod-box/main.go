// Command istiod-box runs Istio's own discovery server without Kubernetes,
// for `cargo xtask istio-bookinfo`.
//
// Why not pilot-discovery itself: at the istio.io/istio versions the Go
// module proxy serves (master of 2026, 1.31 in development), pilot-discovery
// started with --registries= and --configDir panics at start-up: the
// ServiceEntry controller reads the config cluster's namespaces through the
// multicluster controller, which is nil without a Kubernetes client
// (pilot/pkg/serviceregistry/serviceentry/controller.go). Released 1.28 and
// 1.29, which guard it, are not served.
//
// So this program runs Istio's in-process discovery server
// (pilot/test/xds.NewFakeDiscoveryServer): the real config store, ServiceEntry
// registry, push context, config generation and ADS server of istiod, over a
// fake (empty) Kubernetes client, on a real TCP port with plaintext xDS, as
// istiod's port 15010 serves. It reads Istio config from a directory
// (ServiceEntry, WorkloadEntry, DestinationRule, VirtualService, Gateway,
// PeerAuthentication, AuthorizationPolicy, RequestAuthentication ...) and
// applies changes to the files as istiod's --configDir does: new, changed and
// removed resources become creates, updates and deletes in the store, which
// push to the connected proxies. Nothing else of istiod is needed here:
// workload certificates are files the agents serve over SDS.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/mesh"
)

// failer is the test.Failer the in-process server wants: failures end the
// process.
type failer struct{ cleanups []func() }

func (f *failer) Fail()                     { os.Exit(1) }
func (f *failer) FailNow()                  { os.Exit(1) }
func (f *failer) Fatal(args ...any)         { fmt.Fprintln(os.Stderr, args...); os.Exit(1) }
func (f *failer) Fatalf(s string, a ...any) { fmt.Fprintf(os.Stderr, s+"\n", a...); os.Exit(1) }
func (f *failer) Log(args ...any)           { fmt.Println(args...) }
func (f *failer) Logf(s string, a ...any)   { fmt.Printf(s+"\n", a...) }
func (f *failer) TempDir() string           { d, _ := os.MkdirTemp("", "istiod-box"); return d }
func (f *failer) Helper()                   {}
func (f *failer) Cleanup(fn func())         { f.cleanups = append(f.cleanups, fn) }
func (f *failer) Skip(args ...any)          { f.Fatal(args...) }

type key struct {
	kind, namespace, name string
}

// readDir parses every *.yaml/*.yml file under dir (hidden files, which
// the harness writes before renaming, are skipped).
func readDir(dir string) (map[key]config.Config, error) {
	out := map[key]config.Config{}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.HasPrefix(info.Name(), ".") {
			return err
		}
		if !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
			return nil
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		configs, unknown, err := crd.ParseInputs(string(text))
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		for _, u := range unknown {
			fmt.Printf("%s: kind %s not known, skipped\n", path, u.Kind)
		}
		for _, c := range configs {
			if c.Namespace == "" {
				c.Namespace = "default"
			}
			// As istiod's file source stamps it: short hosts in
			// VirtualServices and DestinationRules resolve against it
			// ("reviews" -> "reviews.default.svc.cluster.local").
			c.Domain = "cluster.local"

			out[key{c.GroupVersionKind.String(), c.Namespace, c.Name}] = c
		}
		return nil
	})
	return out, err
}

// sync makes the store hold exactly want: creates, updates, deletes.
func sync(store model.ConfigStoreController, have, want map[key]config.Config) {
	keys := make([]key, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].name < keys[j].name })
	for _, k := range keys {
		c := want[k]
		old, ok := have[k]
		switch {
		case !ok:
			if _, err := store.Create(c); err != nil {
				fmt.Printf("create %v: %v\n", k, err)
			} else {
				fmt.Printf("created %v\n", k)
			}
		case !reflect.DeepEqual(old.Spec, c.Spec) || !reflect.DeepEqual(old.Labels, c.Labels):
			current := store.Get(c.GroupVersionKind, c.Name, c.Namespace)
			if current != nil {
				c.ResourceVersion = current.ResourceVersion
			}
			if _, err := store.Update(c); err != nil {
				fmt.Printf("update %v: %v\n", k, err)
			} else {
				fmt.Printf("updated %v\n", k)
			}
		}
	}
	for k, c := range have {
		if _, ok := want[k]; !ok {
			if err := store.Delete(c.GroupVersionKind, c.Name, c.Namespace, nil); err != nil {
				fmt.Printf("delete %v: %v\n", k, err)
			} else {
				fmt.Printf("deleted %v\n", k)
			}
		}
	}
}

func main() {
	dir := flag.String("configDir", "./config", "directory of Istio config (watched)")
	listen := flag.String("listen", "0.0.0.0:15010", "plaintext xDS address")
	meshFile := flag.String("meshConfig", "./mesh.yaml", "mesh config file")
	flag.Parse()

	m, err := mesh.ReadMeshConfig(*meshFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mesh config: %v\n", err)
		os.Exit(1)
	}
	have, err := readDir(*dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "config: %v\n", err)
		os.Exit(1)
	}
	initial := make([]config.Config, 0, len(have))
	for _, c := range have {
		initial = append(initial, c)
	}
	f := xds.NewFakeDiscoveryServer(&failer{}, xds.FakeOptions{
		Configs:      initial,
		MeshConfig:   m,
		DebounceTime: 100 * time.Millisecond,
		ListenerBuilder: func() (net.Listener, error) {
			return net.Listen("tcp", *listen)
		},
	})
	fmt.Printf("serving xDS on %s with %d resources from %s\n", *listen, len(have), *dir)
	store := f.Store()
	for {
		time.Sleep(100 * time.Millisecond)
		want, err := readDir(*dir)
		if err != nil {
			// A file being written or bad: keep the last good config,
			// as istiod does.
			fmt.Printf("config: %v\n", err)
			continue
		}
		sync(store, have, want)
		have = want
	}
}
