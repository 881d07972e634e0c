package netns

import (
	"context"
	"errors"
	"strings"
)

// List returns the network namespaces whose name starts with prefix.
func List(ctx context.Context, r Runner, prefix string) ([]string, error) {
	out, err := r.Run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Exists reports whether network namespace ns exists.
func Exists(ctx context.Context, r Runner, ns string) (bool, error) {
	names, err := List(ctx, r, ns)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if n == ns {
			return true, nil
		}
	}
	return false, nil
}

// Delete kills every process in network namespace ns (a namespace lives on
// while a process is in it) and deletes it, and with it its interfaces
// (a veth's peer goes too) and every iptables rule made inside it.
func Delete(ctx context.Context, r Runner, ns string) error {
	if pids, _ := r.Run(ctx, "ip", "netns", "pids", ns); strings.TrimSpace(pids) != "" {
		_, _ = r.Run(ctx, append([]string{"kill", "-KILL"}, strings.Fields(pids)...)...)
	}
	_, err := r.Run(ctx, "ip", "netns", "del", ns)
	return err
}

// DeleteAll deletes (Delete) every network namespace whose name starts
// with prefix; none is fine.
func DeleteAll(ctx context.Context, r Runner, prefix string) error {
	names, err := List(ctx, r, prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range names {
		if err := Delete(ctx, r, ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Links returns this namespace's interfaces whose name starts with prefix.
func Links(ctx context.Context, r Runner, prefix string) ([]string, error) {
	out, err := r.Run(ctx, "ip", "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	return names, nil
}

// DeleteLinks deletes this namespace's interfaces whose name starts with
// prefix (veths left half-made by a crash); none is fine.
func DeleteLinks(ctx context.Context, r Runner, prefix string) error {
	links, err := Links(ctx, r, prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range links {
		if _, err := r.Run(ctx, "ip", "link", "del", l); err != nil {
			// The peer of a veth whose other end was in a namespace just
			// deleted goes with it, a moment later.
			if _, serr := r.Run(ctx, "ip", "link", "show", l); serr != nil {
				continue
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
